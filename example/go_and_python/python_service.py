"""The Python half of a Go + Python fleet on one database (see README.md beside this file).

It runs the task ``thumbnail`` for everyone (Go services enqueue it too) and enqueues
``send_invoice``, which only the Go service registers. Shared tasks take positional parameters only.
Run the Go service first (so a worker row lists ``send_invoice``), then:

    QUEUER_DB_URL=postgresql://user:pass@host/db?sslmode=disable QUEUER_DB_WITH_TIMESCALE=false \\
        python example/go_and_python/python_service.py
"""

from __future__ import annotations

from queuer import new_queuer


def thumbnail(image_id: int, width: int) -> str:
    # Go sends numbers as JSON numbers; the annotations turn 3.0 into 3 on this side.
    return f"thumbnails/{image_id}-{width}.png"


def main() -> None:
    q = new_queuer("python-thumbnailer", 4)  # no encryption key: Go cannot read encrypted rows
    q.add_task_with_name(thumbnail, "thumbnail")  # the same name the Go service uses
    q.start()
    try:
        job = q.add_job("send_invoice", 1042, "ada@example.com")  # positional only: Go ignores keywords
        done = q.wait_for_job_finished(job.rid, timeout_seconds=60)
        print("Go ran send_invoice:", done.status.value, done.results)
        q.wait_until_stopped()  # until SIGTERM / a stop request
    finally:
        q.stop()


if __name__ == "__main__":
    main()

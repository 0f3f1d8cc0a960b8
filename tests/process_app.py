"""An application whose module builds its worker at import and has a ``process=True`` task.

Run as a script (``python tests/process_app.py`` with QUEUER_DB_URL set): the task's process
server imports this file again, which builds the Queuer again, and that one must not register.
"""

from __future__ import annotations

import os

from queuer import new_queuer

q = new_queuer("process-app", 2)


@q.task(process=True)
def square_in_process(x: int) -> list[int]:
    return [x * x, os.getpid()]


if __name__ == "__main__":
    q.start(master=False)
    job = q.add_job(square_in_process, 7)
    done = q.wait_for_job_finished(job.rid, timeout_seconds=60)
    print(done.status.value, done.results[0][0] if done.results else None, os.getpid(), flush=True)
    q.stop()

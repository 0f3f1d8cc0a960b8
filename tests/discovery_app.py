"""A worker that finds its tasks by importing a package (``include=``), run by test_workflows:
``main()`` prints the result of a job of a discovered task."""

from __future__ import annotations

from queuer import new_queuer

q = new_queuer("discovery", 2, include=["tests.discovered"])


def main() -> None:
    assert "discovered_double" not in q.tasks  # nothing imported yet
    q.start(master=False)
    job = q.add_job("discovered_double", 21)
    print(q.wait_for_job_finished(job.rid, 30).results[0])
    q.stop()

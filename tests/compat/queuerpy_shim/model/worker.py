from queuer import Worker, WorkerStatus, new_worker, new_worker_with_options

__all__ = ["Worker", "WorkerStatus", "new_worker", "new_worker_with_options"]

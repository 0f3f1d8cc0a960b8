from queuer import Job, JobStatus, new_job

__all__ = ["Job", "JobStatus", "new_job"]

from queuer import BatchJob

__all__ = ["BatchJob"]

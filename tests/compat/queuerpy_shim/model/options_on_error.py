from queuer import OnError, RetryBackoff

__all__ = ["OnError", "RetryBackoff"]

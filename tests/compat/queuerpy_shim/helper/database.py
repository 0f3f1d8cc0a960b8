from queuer import DatabaseConfiguration

__all__ = ["DatabaseConfiguration"]

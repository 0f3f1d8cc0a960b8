from queuer import QueuerError

__all__ = ["QueuerError"]

from queuer import Master, MasterSettings

__all__ = ["Master", "MasterSettings"]

from queuer import Options, Schedule, new_options

__all__ = ["Options", "Schedule", "new_options"]

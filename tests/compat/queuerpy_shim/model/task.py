from queuer import Task, new_task, new_task_with_name

__all__ = ["Task", "new_task", "new_task_with_name"]

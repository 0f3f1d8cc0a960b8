"""Tasks of the test project, defined with Django's task framework."""

try:
    from django.tasks import task
except ImportError:  # Django < 6
    from django_tasks import task


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails", priority=5)
async def shout(text: str) -> str:
    return text.upper()


@task()
def fail() -> None:
    raise ValueError("this task fails")

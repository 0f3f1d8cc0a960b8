"""The scenario test_django runs in the project (``python -c "import shop.scenario"``): enqueue
inside transactions that commit and roll back, then read the results through Django's API."""

import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()

from django.db import connection, transaction  # noqa: E402

from shop.tasks import add, fail, shout  # noqa: E402

with transaction.atomic():
    with connection.cursor() as cur:
        cur.execute("INSERT INTO orders (note) VALUES ('kept')")
    kept = add.enqueue(2, 3)
try:
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("INSERT INTO orders (note) VALUES ('dropped')")
        dropped = add.enqueue(40, 2)
        raise RuntimeError("roll back")
except RuntimeError:
    pass
loud = shout.enqueue("hi")
failing = fail.enqueue()

try:
    from django.tasks import task_backends
except ImportError:
    from django_tasks import task_backends
client = task_backends["default"].client()
for result in (kept, loud, failing):
    client.wait_for_job_finished(result.id, 60)
    result.refresh()
try:
    dropped.refresh()
    dropped_found = True
except Exception:
    dropped_found = False
print(
    json.dumps(
        {
            "kept": [kept.status, kept.return_value],
            "loud": [loud.status, loud.return_value],
            "failing": [failing.status, failing.errors[0].traceback if failing.errors else None],
            "dropped_found": dropped_found,
        }
    )
)

"""Settings of the test project: the database comes from QUEUER_DB_URL (set by the tests)."""

import os
from urllib.parse import parse_qs, urlsplit

_url = urlsplit(os.environ["QUEUER_DB_URL"])
_query = parse_qs(_url.query)

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["queuer.contrib.django", "shop"]
try:  # Django < 6: the backport of django.tasks
    import django_tasks  # noqa: F401

    INSTALLED_APPS.insert(0, "django_tasks")
except ImportError:
    pass
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "postgres",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or _query.get("host", ["127.0.0.1"])[0],  # a socket directory too
        "PORT": _url.port or 5432,
    }
}
TASKS = {"default": {"BACKEND": "queuer.contrib.django.QueuerBackend", "QUEUES": []}}

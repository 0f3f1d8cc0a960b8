"""An application that builds its worker and then fails to import (``queuer worker`` must leave
no worker row behind)."""

from __future__ import annotations

from queuer import new_queuer

worker = new_queuer("broken-app", 2)

raise ImportError("a module this application needs is missing")

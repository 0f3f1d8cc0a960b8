"""``queuerPy.queuer``: the constructors, and the one internal handle its tests read rows through."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import queuer as _queuer
from queuer import Job, JobNotFoundError, Queuer


class _RowReader:
    """queuerPy's tests read rows through ``queuer.db_job``; here that is the public API."""

    def __init__(self, q: Queuer) -> None:
        self._q = q

    def select_job(self, rid: UUID) -> Job | None:
        try:
            return self._q.get_job(rid)
        except JobNotFoundError:
            return None

    def select_job_from_archive(self, rid: UUID) -> Job | None:
        try:
            return self._q.get_job_ended(rid)
        except JobNotFoundError:
            return None


def _with_reader(q: Queuer) -> Queuer:
    q.db_job = _RowReader(q)  # type: ignore[attr-defined]
    return q


def new_queuer(name: str, max_concurrency: int, *options: Any) -> Queuer:
    return _with_reader(_queuer.new_queuer(name, max_concurrency, *options))


def new_queuer_with_db(
    name: str, max_concurrency: int, key: str | None, config: Any, *options: Any
) -> Queuer:
    return _with_reader(_queuer.new_queuer_with_db(name, max_concurrency, key, config, *options))


__all__ = ["Queuer", "new_queuer", "new_queuer_with_db"]

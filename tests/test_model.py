"""Unit tests of pure code (records, encodings, validation, task signatures): no database."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuer import OnError, Options, RetryBackoff, Schedule, ValidationError
from queuer.model.jsoncodec import MAX_NESTING, MAX_SECONDS, as_rid, dumps, nesting, text_problem
from queuer.tasks import Task


def test_importing_the_model_loads_no_driver() -> None:
    import subprocess

    code = "import sys, queuer.model; print('psycopg' in sys.modules, 'queuer.core' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_values_json_has_no_type_for_are_written_as_text() -> None:
    rid = UUID("01234567-89ab-7def-8123-456789abcdef")
    text = dumps([datetime(2026, 1, 2, 3, 4, 5), date(2026, 1, 2), rid, Decimal("1.10")], "p")
    assert text == f'["2026-01-02T03:04:05Z","2026-01-02","{rid}","1.10"]'


def test_nesting_and_text_limits() -> None:
    value: object = 1
    for _ in range(MAX_NESTING):
        value = [value]
    assert nesting(value) == MAX_NESTING and dumps(value, "p")
    with pytest.raises(ValidationError, match="nests more than"):
        dumps([value], "p")
    assert text_problem("fine ✓") is None
    assert "NUL" in (text_problem("a\x00") or "")
    assert "surrogate" in (text_problem("\ud800") or "")


def test_rids_and_durations_are_checked() -> None:
    assert as_rid("01234567-89ab-7def-8123-456789abcdef") == UUID("01234567-89ab-7def-8123-456789abcdef")
    with pytest.raises(ValidationError):
        as_rid("nope")
    with pytest.raises(ValidationError, match="cannot be negative"):
        OnError(timeout=-1)
    with pytest.raises(ValidationError, match="Go's longest duration"):
        Schedule(interval=timedelta(seconds=MAX_SECONDS + 1), max_count=2)
    capped = OnError(max_retries=1000, retry_delay=10, retry_backoff=RetryBackoff.EXPONENTIAL)
    assert capped.delay_before_retry(900) == MAX_SECONDS
    assert OnError(retry_delay=2, retry_backoff=RetryBackoff.LINEAR).delay_before_retry(3) == 6


def test_options_round_trip_and_empty_options_read_as_none() -> None:
    options = Options(
        on_error=OnError(max_retries=1), schedule=Schedule(start=datetime(2030, 1, 1, tzinfo=UTC))
    )
    assert Options.from_json(options.to_json()) == options
    assert Options.from_json({}) is None and Options.from_json(None) is None
    assert OnError.from_dict({"timeout": 5}) == OnError(timeout=5)  # the rest: defaults
    assert OnError.from_json({"timeout": 5}) == OnError(timeout=5, max_retries=0, retry_delay=0)  # Go's zeros


def test_task_signatures_are_checked_without_binding_in_the_common_case() -> None:
    def f(a: int, b: int = 2, *, c: int = 3) -> int:
        return a + b + c

    task = Task.create("f", f)
    assert task(1) == 6 and task.task is f
    task.check_call([1], {})
    task.check_call([1, 2], {"c": 4})
    with pytest.raises(ValidationError, match="cannot be called"):
        task.check_call([], {})
    with pytest.raises(ValidationError, match="cannot be called"):
        task.check_call([1, 2, 3], {})
    with pytest.raises(ValidationError, match="cannot be called"):
        task.check_call([1], {"d": 1})

    def g(*, key: str) -> str:
        return key

    keyword_only = Task.create("g", g)
    keyword_only.check_call([], {"key": "x"})
    with pytest.raises(ValidationError):
        keyword_only.check_call([], {})


@given(
    queue=st.text(min_size=1, max_size=100).filter(lambda s: s.strip() and "\x00" not in s),
    priority=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    key=st.none() | st.text(min_size=1, max_size=255).filter(lambda s: "\x00" not in s),
    expires=st.none() | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1)),
    metadata=st.none() | st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), min_size=1),
)
def test_routing_options_round_trip_through_the_json_go_keeps(
    queue: str, priority: int, key: str | None, expires: datetime | None, metadata: dict[str, int] | None
) -> None:
    try:
        options = Options(
            queue=queue,
            priority=priority,
            unique_key=key,
            expires_at=expires.replace(tzinfo=UTC) if expires else None,
            metadata=metadata,
        )
    except ValidationError:
        return  # lone surrogates: refused when made
    data = json.loads(json.dumps(options.to_json()))  # what the database stores and gives back
    assert set(data) <= {"metadata"}
    back = Options.from_json(data) or Options()
    assert (back.queue, back.priority, back.unique_key, back.expires_at, back.metadata) == (
        queue,
        priority,
        key,
        options.expires_at,
        metadata,
    )

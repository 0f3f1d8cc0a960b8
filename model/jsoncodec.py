"""Value encodings shared with the Go library (contract §4.8).

Durations are integer nanoseconds, times are RFC 3339 with an offset, integers are never floats.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any
from uuid import UUID

from .errors import NotSerializableError, ValidationError

NANOS_PER_MICRO = 1000
# The deepest nesting a value may have: far below what a JSON decoder's recursion handles (Python's
# gives up near 1,000 levels), so every row written can be read back by any worker.
MAX_NESTING = 100
# The longest duration Go can hold (int64 nanoseconds): every duration we write stays below it.
MAX_SECONDS = (2**63 - 1) // 1_000_000_000


def duration_to_nanos(value: timedelta) -> int:
    """Integer nanoseconds of ``value``, computed without floating point."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    return micros * NANOS_PER_MICRO


def nanos_to_duration(nanos: int) -> timedelta:
    """A timedelta from integer nanoseconds (sub-microsecond precision is dropped)."""
    return timedelta(microseconds=nanos // NANOS_PER_MICRO)


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime; a naive value is taken to be UTC already (documented rule)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def time_to_rfc3339(value: datetime) -> str:
    """RFC 3339 text with an explicit offset, which Go's time decoder requires."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


def rfc3339_to_time(text: str) -> datetime:
    """Parse an RFC 3339 time as Go writes it (``Z`` or ``±hh:mm``, up to 9 fraction digits)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(f"not an RFC 3339 time: {text!r}") from exc
    return as_utc(parsed)


def naive_utc(value: datetime) -> datetime:
    """The naive UTC wall-clock value stored in a ``TIMESTAMP`` column (contract §1.9)."""
    return as_utc(value).replace(tzinfo=None)


def require_int(name: str, value: Any, minimum: int | None = None) -> int:
    """Reject bools and floats where Go expects an integer (``3.0`` breaks Go's decoder)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value}")
    return value


def require_seconds(name: str, value: Any) -> float:
    """A non-negative, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValidationError(f"{name} must be a finite number >= 0, got {value}")
    if value > MAX_SECONDS:
        raise ValidationError(f"{name} must be at most {MAX_SECONDS} seconds (Go's longest duration)")
    return value


def _encode_other(value: Any) -> Any:
    """Values JSON has no type for but tasks commonly take: times as RFC 3339 (naive = UTC), dates
    as ``YYYY-MM-DD``, UUIDs and decimals as text. A task annotated with the type gets it back."""
    if isinstance(value, datetime):
        return time_to_rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def as_rid(value: Any, what: str = "rid") -> UUID:
    """A job or worker rid from a ``UUID`` or its text; anything else is a ``ValidationError``."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise ValidationError(f"{what} must be a UUID, got {value!r}")


# One encoder for every call: json.dumps with non-default arguments builds a new one each time,
# and JSONEncoder.encode builds a new C encoder each time (a third of an add_jobs item). This is
# the C encoder JSONEncoder.encode would make (compact, ASCII, no NaN), made once. It keeps no
# state between calls (no circular-reference markers; a cycle ends in RecursionError instead),
# so threads can share it.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_encode_other)
_C_ENCODE = (
    c_make_encoder(None, _encode_other, encode_basestring_ascii, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text`` (a NUL character, or a lone surrogate that is no UTF-8),
    or None when it can."""
    if "\x00" in text:
        return "contains a NUL character, which PostgreSQL cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not valid UTF-8"
    return None


def require_text(what: str, value: Any, max_length: int) -> str:
    """A non-blank string of at most ``max_length`` characters that PostgreSQL can store."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > max_length:
        raise ValidationError(f"{what} is {len(value)} characters; at most {max_length} allowed")
    problem = text_problem(value)
    if problem:
        raise ValidationError(f"{what} {value!r} {problem}")
    return value


def nesting(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (0 for a scalar), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING:
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _find_bad_text(value: Any, path: str) -> str | None:
    """The first string (or key) below ``value`` that PostgreSQL cannot store, described."""
    if isinstance(value, str):
        problem = text_problem(value)
        return f"{path} {problem}" if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_bad_text(key, f"{path} key {key!r}") or _find_bad_text(item, f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_bad_text(item, f"{path}[{index}]")
            if found:
                return found
    return None


def dumps(value: Any, what: str) -> str:
    """Compact JSON text; NaN, Infinity, unknown types, cycles and text PostgreSQL cannot store
    (NUL, lone surrogates) raise ``NotSerializableError``."""
    if not value and isinstance(value, list | tuple | dict):
        return "{}" if isinstance(value, dict) else "[]"
    try:
        # _C_ENCODE is None only without CPython's _json accelerator.
        text = "".join(_C_ENCODE(value, 0)) if _C_ENCODE is not None else _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = "it contains itself or is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise NotSerializableError(f"{what} is not JSON-serialisable: {reason}") from exc
    # Only a text with many brackets can nest too deeply; only then is the value walked.
    if text.count("[") + text.count("{") > MAX_NESTING and nesting(value) > MAX_NESTING:
        raise NotSerializableError(f"{what} nests more than {MAX_NESTING} levels deep")
    # ASCII output: NUL and surrogates appear escaped; only then is the value walked.
    if ("\\u0000" in text or "\\ud" in text) and (found := _find_bad_text(value, what)):
        raise NotSerializableError(found)
    return text

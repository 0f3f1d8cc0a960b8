"""Value encodings shared with the Go library (contract §4.8).

Durations are integer nanoseconds, times are RFC 3339 with an offset, integers are never floats.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from .errors import NotSerializableError, ValidationError

NANOS_PER_MICRO = 1000


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
    return value


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One encoder for every call: json.dumps with non-default arguments builds a new one each time,
# and JSONEncoder.encode builds a new C encoder each time (a third of an add_jobs item). This is
# the C encoder JSONEncoder.encode would make (compact, ASCII, no NaN), made once. It keeps no
# state between calls (no circular-reference markers; a cycle ends in RecursionError instead),
# so threads can share it.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_C_ENCODE = (
    c_make_encoder(None, _refuse, encode_basestring_ascii, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)


def dumps(value: Any, what: str) -> str:
    """Compact JSON text; NaN, Infinity, unknown types and cycles raise ``NotSerializableError``."""
    if not value and isinstance(value, list | tuple | dict):
        return "{}" if isinstance(value, dict) else "[]"
    try:
        if _C_ENCODE is not None:  # None only without CPython's _json accelerator
            return "".join(_C_ENCODE(value, 0))
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = "it contains itself or is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise NotSerializableError(f"{what} is not JSON-serialisable: {reason}") from exc

"""Every SQL statement on Python's queue tables (``queuer_py_queue`` and its rate ring), and the
reads of ``job`` grouped by queue that the queue overview and the limited claim need."""

from __future__ import annotations

from psycopg import sql

from .fragments import NOW_UTC, QUEUE_OF

CHANNEL = "queuer_py_queue"  # NOTIFY channel: a queue's settings changed (payload: its name)

_SETTINGS = "name, paused, concurrency, rate, EXTRACT(EPOCH FROM per)::float8 AS per_seconds"

# Pause or resume: one row per queue with settings, created on first use.
_SET_PAUSED = f"""
WITH q AS (
    INSERT INTO {{queue}} (name, paused) VALUES (%(name)s, %(paused)s)
    ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = {NOW_UTC}
    RETURNING name
)
SELECT pg_notify('{CHANNEL}', name) FROM q
"""

# New limits; whether the rate changed (then its ring is made anew: a full period's starts free).
_SET_LIMITS = f"""
WITH old AS (SELECT rate, per FROM {{queue}} WHERE name = %(name)s FOR UPDATE),
q AS (
    INSERT INTO {{queue}} AS cur (name, concurrency, rate, per)
    VALUES (%(name)s, %(concurrency)s, %(rate)s, %(per)s)
    ON CONFLICT (name) DO UPDATE SET concurrency = EXCLUDED.concurrency, rate = EXCLUDED.rate,
        per = EXCLUDED.per, updated_at = {NOW_UTC},
        rate_head = CASE WHEN cur.rate IS NOT DISTINCT FROM EXCLUDED.rate THEN cur.rate_head ELSE 0 END
    RETURNING name
)
SELECT pg_notify('{CHANNEL}', q.name),
       (SELECT rate FROM old) IS DISTINCT FROM %(rate)s::int AS rate_changed
FROM q
"""
_RING_CLEAR = "DELETE FROM {ring} WHERE queue = %(name)s"
_RING_FILL = (
    "INSERT INTO {ring} (queue, slot, at) "
    "SELECT %(name)s, s, timestamp '2000-01-01' FROM generate_series(0, %(rate)s::int - 1) AS s"
)

# The limited claim, in one transaction: the queue's row locked first (claims of the queue take
# turns), then, in the next statement and so with a snapshot taken after the lock, how many of
# its jobs run now and how soon each of the next ring slots is free (seconds; <= 0: free now).
_LOCK = f"SELECT {_SETTINGS}, rate_head FROM {{queue}} WHERE name = %(name)s FOR UPDATE"
_ROOM = f"""
SELECT (SELECT count(*) FROM {{job}} WHERE status = 'RUNNING' AND {QUEUE_OF} = %(name)s) AS running,
       ARRAY(SELECT EXTRACT(EPOCH FROM (r.at + q.per - {NOW_UTC}))::float8
             FROM unnest(%(slots)s::int[]) WITH ORDINALITY AS s(slot, pos)
             JOIN {{ring}} AS r ON r.queue = %(name)s AND r.slot = s.slot
             CROSS JOIN (SELECT per FROM {{queue}} WHERE name = %(name)s) AS q
             ORDER BY s.pos) AS waits
"""
_RING_TAKE = f"""
WITH taken AS (
    UPDATE {{ring}} SET at = {NOW_UTC} WHERE queue = %(name)s AND slot = ANY(%(slots)s::int[])
)
UPDATE {{queue}} SET rate_head = %(head)s WHERE name = %(name)s
"""

# The overview: counts of the jobs in ``job`` by queue, joined with the queues' settings.
_OVERVIEW = f"""
WITH counts AS (
    SELECT {QUEUE_OF} AS name,
           count(*) FILTER (WHERE status = 'QUEUED') AS queued,
           count(*) FILTER (WHERE status = 'SCHEDULED') AS scheduled,
           count(*) FILTER (WHERE status = 'RUNNING') AS running,
           EXTRACT(EPOCH FROM {NOW_UTC} - min(created_at) FILTER (WHERE status = 'QUEUED'))::float8
               AS oldest_queued_seconds
    FROM {{job}} GROUP BY 1
)
SELECT COALESCE(c.name, q.name) AS name, COALESCE(c.queued, 0) AS queued,
       COALESCE(c.scheduled, 0) AS scheduled, COALESCE(c.running, 0) AS running,
       c.oldest_queued_seconds, COALESCE(q.paused, FALSE) AS paused, q.concurrency, q.rate,
       EXTRACT(EPOCH FROM q.per)::float8 AS per_seconds
FROM counts AS c FULL JOIN {{queue}} AS q ON q.name = c.name
ORDER BY 1
"""


class QueueTable:
    """Composed statements for one schema."""

    def __init__(self, schema: str) -> None:
        names = {
            "queue": sql.Identifier(schema, "queuer_py_queue"),
            "ring": sql.Identifier(schema, "queuer_py_queue_start"),
            "job": sql.Identifier(schema, "job"),
        }

        def compose(template: str) -> str:
            return sql.SQL(template).format(**names).as_string(None)

        self.set_paused = compose(_SET_PAUSED)
        self.set_limits = compose(_SET_LIMITS)
        self.ring_clear = compose(_RING_CLEAR)
        self.ring_fill = compose(_RING_FILL)
        self.settings = compose(f"SELECT {_SETTINGS} FROM {{queue}}")
        self.lock = compose(_LOCK)
        self.room = compose(_ROOM)
        self.ring_take = compose(_RING_TAKE)
        self.overview = compose(_OVERVIEW)

"""Every SQL statement on ``queuer_py_periodic`` (periodic tasks declared in code)."""

from __future__ import annotations

from psycopg import sql

from .fragments import NOW_UTC

# A worker's declaration: the definition in code wins; the schedule's progress (last_tick) stays.
# A new schedule starts at its most recent tick (not run): it first runs at its next one.
_DECLARE = f"""
INSERT INTO {{periodic}} AS cur (name, task_name, cron, every_seconds, timezone, catch_up, args, kwargs,
                                 options, last_tick, declared_at)
VALUES (%(name)s, %(task_name)s, %(cron)s, %(every_seconds)s, %(timezone)s, %(catch_up)s, %(args)s::jsonb,
        %(kwargs)s::jsonb, %(options)s::jsonb, %(start)s, {NOW_UTC})
ON CONFLICT (name) DO UPDATE SET task_name = EXCLUDED.task_name, cron = EXCLUDED.cron,
    every_seconds = EXCLUDED.every_seconds, timezone = EXCLUDED.timezone, catch_up = EXCLUDED.catch_up,
    args = EXCLUDED.args, kwargs = EXCLUDED.kwargs, options = EXCLUDED.options, declared_at = {NOW_UTC}
"""

_COLUMNS = (
    "name, task_name, cron, every_seconds, timezone, catch_up, args, kwargs, options, last_tick, declared_at, "
    f"EXTRACT(EPOCH FROM {NOW_UTC} - declared_at)::float8 AS silent_seconds"
)


class PeriodicTable:
    """Composed statements for one schema."""

    def __init__(self, schema: str) -> None:
        names = {"periodic": sql.Identifier(schema, "queuer_py_periodic")}

        def compose(template: str) -> str:
            return sql.SQL(template).format(**names).as_string(None)

        self.declare = compose(_DECLARE)
        # The schedules a worker runs, as the table has them now (every worker that declares a
        # schedule runs the same definition, the one written last).
        self.of_names = compose(f"SELECT {_COLUMNS} FROM {{periodic}} WHERE name = ANY(%(names)s::text[])")
        self.all = compose(f"SELECT {_COLUMNS} FROM {{periodic}} ORDER BY name")
        # Still declared: a running worker that declares them says so now and then.
        self.touch = compose(
            f"UPDATE {{periodic}} SET declared_at = {NOW_UTC} WHERE name = ANY(%(names)s::text[])"
        )
        # Compare-and-set: one worker moves a schedule past its due ticks, in the transaction that
        # enqueues their jobs.
        self.advance = compose(
            "UPDATE {periodic} SET last_tick = %(tick)s WHERE name = %(name)s "
            "AND last_tick IS NOT DISTINCT FROM %(last)s RETURNING name"
        )

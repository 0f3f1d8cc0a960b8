"""The dashboard's pages: each reads what it shows and renders one template. A page's script
fetches it again when the live feed says the tables it shows changed, and swaps in its live parts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from queuer.model import QueuerError, ValidationError

from .filters import ENDED_STATUSES, LIVE_STATUSES, PAGE_SIZES, JobFilter, cursor, page_size
from .reads import ago
from .state import Dashboard

NONE = "\u2013"  # an en dash: no value
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _number(value: float | int | None) -> str:
    return NONE if value is None else f"{round(value):,}"


def _duration(seconds: float | None) -> str:
    """A short human duration: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    if seconds is None:
        return NONE
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _timestamp(value: datetime | None) -> str:
    if value is None or value.year <= 1:
        return NONE
    return value.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


TEMPLATES.env.filters["number"] = _number
TEMPLATES.env.filters["duration"] = _duration
TEMPLATES.env.filters["timestamp"] = _timestamp


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.queuer
    return dashboard


async def render(request: Request, template: str, topics: str, **context: Any) -> Response:
    """The page, or only its live parts when its script asks for them."""
    dashboard = dashboard_of(request)
    now = datetime.now(UTC)
    values = {
        "request": request,
        "topics": topics,
        "read_only": dashboard.access.read_only,
        "csrf": dashboard.access.csrf_token,
        "now": now,
        "ago": lambda value: ago(value, now),
        "notice": request.query_params.get("notice"),
        "problem": request.query_params.get("problem"),
        **context,
    }
    return TEMPLATES.TemplateResponse(request, template, values)


async def overview(request: Request) -> Response:
    dashboard = dashboard_of(request)
    await dashboard.ready()
    reads = dashboard.reads
    live, ended, hour, oldest, master = await asyncio.gather(
        reads.counts(False),
        reads.counts(True),
        reads.last_hour(),
        reads.oldest_queued_seconds(),
        reads.master(),
    )
    peak = max((m.total for m in hour), default=0)
    tasks = sorted(set(live.by_task) | set(ended.by_task))
    return await render(
        request,
        "overview.html",
        "job archive worker queue",
        live=live,
        ended=ended,
        hour=hour,
        peak=peak,
        hour_total={s: sum(getattr(m, s) for m in hour) for s in ("succeeded", "failed", "cancelled")},
        oldest=oldest,
        master=master,
        tasks=tasks,
        live_statuses=LIVE_STATUSES,
        ended_statuses=ENDED_STATUSES,
    )


async def job_list(request: Request) -> Response:
    """The live jobs (``/jobs``), the archive (``/archive``) or the scheduled jobs (``/scheduled``)."""
    dashboard = dashboard_of(request)
    await dashboard.ready()
    view = request.scope["route"].name
    ended = view == "archive"
    query = dict(request.query_params)
    if view == "scheduled":
        query["status"] = "SCHEDULED"
    where = JobFilter.from_query(query, ended)
    entries = page_size(request.query_params)
    page = await dashboard.reads.page(
        where, cursor(request.query_params, "older"), cursor(request.query_params, "newer"), entries
    )
    periodic = await dashboard.client.get_periodic_async() if view == "scheduled" else []
    return await render(
        request,
        "jobs.html",
        "archive" if ended else "job",
        view=view,
        ended=ended,
        where=where,
        page=page,
        entries=entries,
        sizes=PAGE_SIZES,
        statuses=ENDED_STATUSES if ended else LIVE_STATUSES,
        periodic=periodic,
    )


async def job_detail(request: Request) -> Response:
    dashboard = dashboard_of(request)
    await dashboard.ready()
    rid = _rid(request.path_params["rid"])
    job = await dashboard.reads.job(rid)
    if job is None:
        return await render(request, "missing.html", "", what=f"job {rid}")
    reveal = request.query_params.get("reveal") == "1"
    shown = {}
    if reveal:
        for column in ("parameters", "parameters_keyed", "results"):
            shown[column] = dashboard.reads.reveal(job, column)
    encrypted = [c for c in ("parameters", "parameters_keyed", "results") if job.get(f"{c}_encrypted")]
    return await render(
        request, "job.html", "job archive progress", job=job, reveal=reveal, shown=shown, encrypted=encrypted
    )


async def workers(request: Request) -> Response:
    dashboard = dashboard_of(request)
    await dashboard.ready()
    rows, master = await asyncio.gather(dashboard.reads.workers(), dashboard.reads.master())
    return await render(request, "workers.html", "worker job", workers=rows, master=master)


async def worker_detail(request: Request) -> Response:
    dashboard = dashboard_of(request)
    await dashboard.ready()
    rid = _rid(request.path_params["rid"])
    found = [w for w in await dashboard.reads.workers(10_000) if w["rid"] == rid]
    if not found:
        return await render(request, "missing.html", "", what=f"worker {rid}")
    running = await dashboard.reads.running_of(rid)
    master = await dashboard.reads.master()
    return await render(request, "worker.html", "worker job", worker=found[0], running=running, master=master)


async def queues(request: Request) -> Response:
    dashboard = dashboard_of(request)
    await dashboard.ready()
    found = await dashboard.client.get_queues_async()
    return await render(request, "queues.html", "job queue", queues=found)


def _rid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ValidationError(f"not a rid: {text[:60]!r}") from None


async def refused(request: Request, exc: Exception) -> Response:
    """Bad input in a link or a form: the page says what was wrong (400)."""
    assert isinstance(exc, QueuerError)
    response = await render(request, "missing.html", "", what=None, problem=str(exc))
    response.status_code = 400
    return response

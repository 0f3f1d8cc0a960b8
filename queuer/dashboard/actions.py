"""The dashboard's actions: form posts from its own pages, each checked (not read-only, sent by
one of its pages with the page's token), carried out through the client's operations, and
answered with a redirect back to the page with what happened."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import urlencode, urlsplit
from uuid import UUID

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from queuer.model import QueuerError, ValidationError

from .filters import JobFilter
from .pages import _rid, dashboard_of
from .security import same_origin, valid_csrf

BULK_BATCH = 1000  # rids per statement of a bulk action
BULK_LIMIT = 100_000  # jobs one click acts on; the page says when more match

Handler = Callable[[Request, FormData], Awaitable[str]]


def action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route that runs ``handler`` once the request passes the checks; the handler returns the
    notice shown on the page it redirects back to."""

    async def endpoint(request: Request) -> Response:
        dashboard = dashboard_of(request)
        if dashboard.access.read_only:
            return PlainTextResponse("the dashboard is read-only", status_code=403)
        form = await request.form()
        token = form.get("csrf")
        if not same_origin(request) or not valid_csrf(
            dashboard.access, token if isinstance(token, str) else None
        ):
            return PlainTextResponse("refused: not sent by a page of this dashboard", status_code=403)
        await dashboard.ready()
        back = _back(request, form)
        try:
            notice = await handler(request, form)
        except QueuerError as exc:
            return RedirectResponse(_with(back, problem=str(exc)), status_code=303)
        dashboard.live.publish("job", "archive", "queue", "worker")
        return RedirectResponse(_with(back, notice=notice), status_code=303)

    return endpoint


def _back(request: Request, form: FormData) -> str:
    """Where to go after the action: the page it came from (a path of this site only)."""
    value = form.get("next")
    if isinstance(value, str):
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc and value.startswith("/") and not value.startswith("//"):
            return value
    return str(request.url_for("overview").path)


def _with(url: str, **message: str) -> str:
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and not p.startswith(("notice=", "problem="))]
    query = "&".join([*kept, urlencode(message)])
    return f"{parts.path}?{query}"


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


async def _one(request: Request, act: Callable[[list[UUID]], Awaitable[int]], done: str, refused: str) -> str:
    """A single-job action through the client's many-job form (nothing decoded, no key needed)."""
    rid = _rid(request.path_params["rid"])
    if not await act([rid]):
        raise QueuerError(f"job {rid} {refused}")
    return f"job {rid} {done}"


async def cancel_job(request: Request, form: FormData) -> str:
    client = dashboard_of(request).client
    return await _one(
        request, client.cancel_jobs_async, "cancelled", "is not queued, scheduled or running any more"
    )


async def readd_job(request: Request, form: FormData) -> str:
    client = dashboard_of(request).client
    return await _one(
        request,
        client.readd_jobs_from_archive_async,
        "added again as a new job",
        "was not added again: not in the archive, or its unique key is held",
    )


async def _bulk(request: Request, form: FormData, ended: bool) -> tuple[int, bool]:
    """Act on every job matching the form's filter, a batch at a time; (how many, more left)."""
    dashboard = dashboard_of(request)
    where = JobFilter.from_query({k: v for k, v in form.items() if isinstance(v, str)}, ended)
    done, seen, last = 0, 0, None
    while seen < BULK_LIMIT:
        batch = await dashboard.reads.matching(where, last, min(BULK_BATCH, BULK_LIMIT - seen))
        if not batch:
            return done, False
        rids = [row["rid"] for row in batch]
        if ended:
            done += await dashboard.client.readd_jobs_from_archive_async(rids)
        else:
            done += await dashboard.client.cancel_jobs_async(rids)
        seen += len(batch)
        last = batch[-1]["id"]
    return done, bool(await dashboard.reads.matching(where, last, 1))


async def cancel_matching(request: Request, form: FormData) -> str:
    done, more = await _bulk(request, form, ended=False)
    return f"{done:,} jobs cancelled" + ("; more match: cancel again" if more else "")


async def readd_matching(request: Request, form: FormData) -> str:
    done, more = await _bulk(request, form, ended=True)
    return f"{done:,} jobs added again" + ("; more match: add again" if more else "")


async def pause_queue(request: Request, form: FormData) -> str:
    name = request.path_params["name"]
    await dashboard_of(request).client.pause_queue_async(name)
    return f"queue {name} paused"


async def resume_queue(request: Request, form: FormData) -> str:
    name = request.path_params["name"]
    await dashboard_of(request).client.resume_queue_async(name)
    return f"queue {name} resumed"


async def limit_queue(request: Request, form: FormData) -> str:
    name = _text(form, "queue") or ""
    concurrency = _whole(form, "concurrency")
    rate = _whole(form, "rate")
    per = _whole(form, "per") or 1
    await dashboard_of(request).client.set_queue_limits_async(
        name, concurrency=concurrency, rate=rate, per=timedelta(seconds=per)
    )
    return f"queue {name}: limits set"


async def stop_worker(request: Request, form: FormData) -> str:
    rid = _rid(request.path_params["rid"])
    client = dashboard_of(request).client
    if form.get("mode") == "now":
        await client.stop_worker_async(rid)
        return f"worker {rid} asked to stop now"
    await client.stop_worker_gracefully_async(rid)
    return f"worker {rid} asked to finish its jobs and stop"


def _whole(form: FormData, name: str) -> int | None:
    text = _text(form, name)
    if text is None:
        return None
    if not text.isdigit():
        raise ValidationError(f"{name} must be a whole number, not {text[:20]!r}")
    return int(text)

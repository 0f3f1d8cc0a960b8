"""``create_app``: the dashboard as one Starlette application, served by ``queuer dashboard`` or
mounted inside an application's own (FastAPI, Starlette, any ASGI router)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from queuer.client import Client
from queuer.model import QueuerError

from . import actions, pages
from .metrics import FleetMetrics
from .security import Access, AccessMiddleware
from .state import Dashboard, Settings

PING_SECONDS = 15


def create_app(
    client: Client | None = None,
    *,
    read_only: bool = False,
    basic_auth: tuple[str, str] | None = None,
    token: str | None = None,
    encryption_key: str | None = None,
    metrics: bool = True,
) -> Starlette:
    """The dashboard of the database ``client`` is connected to (without one: the database the
    ``QUEUER_DB_*`` variables name, opened on the first request).

    ``read_only`` hides and refuses every action. ``basic_auth`` (user, password) and ``token``
    (a bearer token) each make every request prove it knows them. ``encryption_key`` lets it
    show encrypted parameters and results when asked; without it they stay sealed. ``metrics``
    serves ``/metrics`` in the Prometheus format (needs prometheus_client)."""
    access = Access(read_only=read_only, basic_auth=basic_auth, token=token)
    dashboard = Dashboard(client, Settings(access=access, encryption_key=encryption_key))
    fleet = FleetMetrics(dashboard) if metrics else None

    async def events(request: Request) -> Response:
        """The live feed: an event each time tables the page shows changed."""
        await dashboard.ready()
        wanted = frozenset(request.query_params.get("topics", "").split())

        async def stream() -> AsyncIterator[ServerSentEvent]:
            async with dashboard.live.subscribe() as changes:
                yield ServerSentEvent(event="ready", data="live")
                while True:
                    changed = await changes.get()
                    hit = changed & wanted if wanted else changed
                    if hit:
                        yield ServerSentEvent(event="change", data=" ".join(sorted(hit)))

        return EventSourceResponse(stream(), ping=PING_SECONDS)

    async def metrics_endpoint(request: Request) -> Response:
        assert fleet is not None
        await dashboard.ready()
        return Response(await fleet.scrape(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/", pages.overview, name="overview"),
        Route("/jobs", pages.job_list, name="jobs"),
        Route("/archive", pages.job_list, name="archive"),
        Route("/scheduled", pages.job_list, name="scheduled"),
        Route("/jobs/{rid}", pages.job_detail, name="job"),
        Route("/workers", pages.workers, name="workers"),
        Route("/workers/{rid}", pages.worker_detail, name="worker"),
        Route("/queues", pages.queues, name="queues"),
        Route("/events", events, name="events"),
        Route("/jobs/{rid}/cancel", actions.action(actions.cancel_job), methods=["POST"], name="cancel"),
        Route("/jobs/{rid}/readd", actions.action(actions.readd_job), methods=["POST"], name="readd"),
        Route(
            "/bulk/cancel", actions.action(actions.cancel_matching), methods=["POST"], name="cancel_matching"
        ),
        Route("/bulk/readd", actions.action(actions.readd_matching), methods=["POST"], name="readd_matching"),
        Route("/queues/{name}/pause", actions.action(actions.pause_queue), methods=["POST"], name="pause"),
        Route("/queues/{name}/resume", actions.action(actions.resume_queue), methods=["POST"], name="resume"),
        Route("/queues/limits", actions.action(actions.limit_queue), methods=["POST"], name="limits"),
        Route("/workers/{rid}/stop", actions.action(actions.stop_worker), methods=["POST"], name="stop"),
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]
    if fleet is not None:
        routes.append(Route("/metrics", metrics_endpoint, name="metrics"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dashboard.close()

    app = Starlette(routes=routes, exception_handlers={QueuerError: pages.refused}, lifespan=lifespan)
    app.state.queuer = dashboard
    app.add_middleware(AccessMiddleware, access=access)
    return app


async def close(app: Starlette) -> None:
    """Close what a mounted dashboard opened (its own application's lifespan does not reach it)."""
    dashboard: Dashboard = app.state.queuer
    await dashboard.close()


__all__ = ["close", "create_app"]

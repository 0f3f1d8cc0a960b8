"""Enqueue from a FastAPI application: one job per request, the rid in the response.

    pip install -e ".[fastapi]"
    QUEUER_DB_URL=postgresql://postgres@127.0.0.1:5432/postgres uvicorn example.fastapi_app:app
    QUEUER_DB_URL=... queuer worker example.fastapi_tasks:worker      # the worker, in its own process

The web process only produces: ``queuer.connect()`` gives a ``Client``, which enqueues, reads and
waits and never registers a worker row. Its async methods never block the server's event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from fastapi import FastAPI, HTTPException

import queuer
from queuer import JobNotFoundError

state: dict[str, queuer.Client] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    client = queuer.connect()
    state["client"] = client
    yield
    await client.close_async()


app = FastAPI(lifespan=lifespan)


@app.post("/signup")
async def signup(address: str) -> dict[str, Any]:
    # By name: the web process does not import the worker's code. The name must be registered by
    # a worker (any language) or add_job raises UnknownTaskError.
    job = await state["client"].add_job_async("send_welcome_email", address)
    return {"rid": str(job.rid)}


@app.get("/jobs/{rid}")
async def job_status(rid: UUID) -> dict[str, Any]:
    try:
        job = await state["client"].find_job_async(rid)  # queued, running or archived
    except JobNotFoundError:
        raise HTTPException(404, "no such job") from None
    return {"rid": str(job.rid), "status": job.status.value, "results": job.results, "error": job.error}

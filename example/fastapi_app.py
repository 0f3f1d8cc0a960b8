"""Enqueue from a FastAPI application: one job per request, the rid in the response.

    pip install -e ".[fastapi,embedded]"
    QUEUER_DB_URL=postgresql://postgres@127.0.0.1:5432/postgres uvicorn example.fastapi_app:app

The queuer's async twins never block the server's event loop. The same process also runs the
worker here; in production the worker usually runs apart (``queuer worker module:queuer``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from fastapi import FastAPI, HTTPException

from queuer import JobNotFoundError, Queuer, new_queuer

state: dict[str, Queuer] = {}


async def send_welcome_email(address: str) -> str:
    return f"sent to {address}"


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    q = new_queuer("fastapi-worker", 4)
    q.add_task(send_welcome_email)
    q.start()
    state["queuer"] = q
    yield
    await q.stop_async()


app = FastAPI(lifespan=lifespan)


@app.post("/signup")
async def signup(address: str) -> dict[str, Any]:
    job = await state["queuer"].add_job_async(send_welcome_email, address)
    return {"rid": str(job.rid)}


@app.get("/jobs/{rid}")
async def job_status(rid: UUID) -> dict[str, Any]:
    q = state["queuer"]
    try:
        job = await q.get_job_ended_async(rid)
    except JobNotFoundError:
        try:
            job = await q.get_job_async(rid)
        except JobNotFoundError:
            raise HTTPException(404, "no such job") from None
    return {"rid": str(job.rid), "status": job.status.value, "results": job.results, "error": job.error}

"""The worker behind ``example/fastapi_app.py``: ``queuer worker example.fastapi_tasks:worker``."""

from __future__ import annotations

from queuer import new_queuer

worker = new_queuer("welcome-mailer", 4)


@worker.task
async def send_welcome_email(address: str) -> str:
    return f"sent to {address}"

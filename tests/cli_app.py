"""A user module for ``queuer worker tests.cli_app:make`` in the CLI tests."""

from __future__ import annotations

from queuer import Queuer, new_queuer


def shout(word: str) -> str:
    return word.upper()


def make() -> Queuer:
    q = new_queuer("cli-app", 1, heartbeat_interval=0.5)
    q.add_task(shout)
    return q

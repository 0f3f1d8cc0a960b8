"""Module-level tasks for process execution (a process task must be picklable by reference)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def cpu_square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def hang_and_report(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)


def explode() -> None:
    raise ValueError("boom in a process")

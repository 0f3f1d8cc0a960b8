"""Run queuerPy's public-API tests against queuer: ``run_queuerpy.py PATH_TO_QUEUERPY [pytest args]``.

See README.md beside this file. Nothing of queuerPy is copied into this repository: the test files
are read from the given checkout into a temporary package next to a copy of the shim.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# queuerPy's tests of its public API. Left out: queuer_listener_test.py (drives its internal
# broadcasters), core/, database/ and helper/ tests (its internals).
PUBLIC_API_TESTS = (
    "queuer_job_test.py",
    "queuer_task_test.py",
    "queuer_next_interval_test.py",
    "queuer_worker_test.py",
    "queuer_master_test.py",
    "queuer_test.py",
    "model/options_on_error_test.py",
    "model/options_test.py",
)


def main() -> int:
    source = Path(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="queuerpy-compat-") as tmp:
        package = Path(tmp) / "qpy"
        shutil.copytree(HERE / "queuerpy_shim", package)
        for name in PUBLIC_API_TESTS:
            target = package / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / name, target)
        (Path(tmp) / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
        args = [sys.executable, "-m", "pytest", "-q", "--timeout=120", "qpy", *sys.argv[2:]]
        return subprocess.call(args, cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())

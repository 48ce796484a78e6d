"""One test file run by pytest in a fresh process, with tests/conftest.py as a plugin (its fixtures and hooks,
none of the suite's tests), in a folder of the caller's: what only a new process shows (a first import, what
a whole run leaves behind)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def run(folder: Path, source: str) -> subprocess.CompletedProcess:
    """Run `source` as folder/test_pair.py; the process's temporary folder is folder/tmp."""
    (folder / "test_pair.py").write_text(source)
    (folder / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "conftest",
         "--rootdir", str(folder), str(folder / "test_pair.py")],
        cwd=folder, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(TESTS), "TMPDIR": str(folder / "tmp")},
    )

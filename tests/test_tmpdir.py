"""A suite run leaves the machine's temporary folder as it found it: everything goes in a folder of the run's,
removed when the run passes, and a test that leaves a file there fails the run naming it (tests/conftest.py)."""

from __future__ import annotations

import fresh_pytest

CLEAN = '''
import tempfile


def test_writes_only_what_it_removes(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with tempfile.NamedTemporaryFile() as scratch:
        scratch.write(b"x")
'''
LEAVES_A_FILE = '''
import tempfile


def test_leaves_a_file_behind():
    tempfile.NamedTemporaryFile(prefix="left-behind-", delete=False).close()
'''


def test_a_passing_run_leaves_its_temporary_folder_empty(tmp_path):
    done = fresh_pytest.run(tmp_path, CLEAN)
    assert "1 passed" in done.stdout and done.returncode == 0, done.stdout + done.stderr
    assert list((tmp_path / "tmp").iterdir()) == []  # pytest's own folders went with the run's


def test_a_file_left_in_the_temporary_folder_fails_the_run_naming_it(tmp_path):
    done = fresh_pytest.run(tmp_path, LEAVES_A_FILE)
    assert done.returncode != 0 and "1 passed, 1 error" in done.stdout, done.stdout + done.stderr
    assert "left in $TMPDIR" in done.stdout and "left-behind-" in done.stdout, done.stdout
    kept = list((tmp_path / "tmp").iterdir())  # a failed run keeps its folder for a look, and says where
    assert len(kept) == 1 and str(kept[0]) in done.stderr, (kept, done.stderr)

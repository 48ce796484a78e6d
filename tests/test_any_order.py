"""The suite passes in any order: a test reads SkyPilot's catalogs from its own folder even when an earlier
test of the same process imported SkyPilot's catalog reader (which binds its folder at first import)."""

from __future__ import annotations

from pathlib import Path

import fresh_pytest
import pytest

TESTS = Path(__file__).resolve().parent

# Two tests run in this order in a fresh process: the first imports SkyPilot's catalog reader with its own
# Lambda prices, the second writes other prices in its own folder and must read those.
PAIR = '''
from launcher.sky import skyapi

HEADER = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice\\n"


def prices_read_after_writing(home, price):
    folder = home / ".sky" / "catalogs" / "v8" / "lambda"
    folder.mkdir(parents=True)
    gpu = "{'Gpus': [{'Name': 'A100', 'Manufacturer': 'NVIDIA', 'Count': 1.0, 'MemoryInfo': {'SizeInMiB': 40960}}]}"
    (folder / "vms.csv").write_text(HEADER + f'gpu_1x_a100,A100,1.0,30,200,{price},us-east-1,"{gpu}",\\n')
    return [row["price"] for row in skyapi.list_gpu_offers(["A100"], ["lambda"])]


def test_1_imports_skypilots_catalog_first(isolated_env):
    assert prices_read_after_writing(isolated_env, 1.11) == [1.11]


def test_2_reads_its_own_folder_afterwards(isolated_env):
    assert prices_read_after_writing(isolated_env, 2.22) == [2.22]
'''
WITHOUT_THE_FIXTURE = '''

import pytest


@pytest.fixture(autouse=True)
def skypilot_catalog_folder():  # overrides conftest's: SkyPilot keeps the folder of its first import
    yield
'''


@pytest.mark.parametrize("source, outcome", [(PAIR, "2 passed"), (PAIR + WITHOUT_THE_FIXTURE, "1 failed, 1 passed")],
                         ids=["with-the-fixture", "without-it"])
def test_a_later_test_reads_its_own_skypilot_catalog_folder(tmp_path, source, outcome):
    done = fresh_pytest.run(tmp_path, source)
    assert outcome in done.stdout, done.stdout + done.stderr
    if "failed" in outcome:  # the later test read the first test's prices
        assert "assert [1.11] == [2.22]" in done.stdout, done.stdout


def test_no_test_module_imports_another():
    """Shared fixtures live in conftest.py and shared helpers in modules not named test_*: importing a test
    module also collects its tests and fixtures a second time, under another name."""
    import ast

    found = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            found += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert found == []

"""benchmarks/gpu/summarize_profiles.py's claim rule (PROFILES.md, "Method"): a profile is called faster or
slower than the baseline only when the two samples' ranges, each widened by its largest wave spread, do not
overlap; the table is read from the archive as the device returns it."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu" / "summarize_profiles.py"
spec = importlib.util.spec_from_file_location("summarize_profiles", SCRIPT)
assert spec is not None and spec.loader is not None
summarize = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summarize)


def sample(rate: float, cv: float) -> dict:
    return {"output_tokens_per_s": rate, "spread": {"output_tokens_per_s_cv": cv}, "ttft_ms_p50": 1.0,
            "tpot_ms_p50": 1.0}


@pytest.mark.parametrize(
    ("ours", "base", "expected"),
    [
        ([sample(110, 0.01), sample(112, 0.01)], [sample(100, 0.01), sample(101, 0.01)], "faster"),
        ([sample(90, 0.01), sample(91, 0.01)], [sample(100, 0.01), sample(101, 0.01)], "slower"),
        # 5% apart, but one sample's waves spread 5%: inside the noise
        ([sample(105, 0.05), sample(106, 0.01)], [sample(100, 0.01), sample(100, 0.01)],
         "no difference beyond the spread"),
        # the samples' own range overlaps the baseline's
        ([sample(100, 0.0), sample(120, 0.0)], [sample(95, 0.0), sample(110, 0.0)], "no difference beyond the spread"),
        ([sample(200, 0.0)], [sample(100, 0.0), sample(100, 0.0)], "no claim (fewer than 2 samples)"),
    ],
)
def test_a_difference_is_claimed_only_beyond_the_spread(ours: list, base: list, expected: str) -> None:
    assert summarize.verdict(ours, base) == expected


def test_the_table_reads_the_archive_and_compares_with_the_bare_server(tmp_path: Path) -> None:
    def record(name: str, rates: list[float]) -> dict:
        cells = [{"tool": "gptoss-sky bench", "concurrency": 256, "rc": 0,
                  "result": {"levels": [sample(rate, 0.01)]}} for rate in rates]
        cells.append({"tool": "vllm bench serve", "concurrency": 256, "rc": 0,
                      "result": {"output_throughput": rates[0], "median_ttft_ms": 1.0, "median_tpot_ms": 1.0}})
        cells.append({"tool": "gptoss-sky bench", "concurrency": 1, "rc": 1, "stdout_tail": "failed"})
        return {"name": name, "startup_s": 200.0, "input_len": 1024, "output_len": 1024, "cells": cells}

    run = tmp_path / "profiles-test"
    run.mkdir()
    with tarfile.open(run / "results.tar.xz", "w:xz") as archive:
        for rec in (record("20b-bare", [100.0, 101.0]), record("20b-balanced", [120.0, 121.0])):
            data = json.dumps(rec).encode()
            info = tarfile.TarInfo(f"./{rec['name']}.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    records = summarize.load(run)
    assert set(records) == {"20b-bare", "20b-balanced"}
    assert list(summarize.levels(records["20b-bare"])) == [256]  # the failed cell is left out
    text = summarize.table(records, "20b-bare")
    assert "1.199x: faster" in text  # 120.5 / 100.5

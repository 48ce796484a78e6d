"""The throughput model behind plan's $ per 1M tokens: measured rows first, documented extrapolation."""

from __future__ import annotations

import pytest

from launcher.plan import catalog, throughput


@pytest.fixture(scope="module")
def cat():
    return catalog.load()


def test_measured_h200_rows_are_used_and_cited(cat):
    est = throughput.estimate(cat, "gpt-oss-120b", "H200", 1)
    assert est.output_tokens_per_s == 6453 and "benchmarks/gpu/RESULTS.md" in est.basis


def test_gpu_without_a_figure_scales_the_nearest_bandwidth_figure(cat):
    est = throughput.estimate(cat, "gpt-oss-120b", "B200", 1)
    assert est.output_tokens_per_s == pytest.approx(6453 * 8000 / 4800, rel=1e-3)
    assert "H200:1" in est.basis


def test_count_without_a_figure_uses_the_count_scaling(cat):
    est = throughput.estimate(cat, "gpt-oss-20b", "H200", 8)
    assert "x 5.0 for 8 GPUs" in est.basis


def test_dollars_per_million_tokens():
    assert throughput.usd_per_million_output_tokens(3.6, 1000) == pytest.approx(1.0)
    assert throughput.usd_per_million_output_tokens(3.6, 0) is None

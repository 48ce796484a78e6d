"""The planner against vLLM's public printouts and against the arithmetic worked by hand."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from launcher import capacity, catalog
from launcher.cli import cli

GIB = 1024**3


@pytest.fixture(scope="module")
def cat():
    return catalog.load()


@pytest.mark.parametrize(
    "model, gpu, printed",
    [("20b", "L4", "5.22x"), ("120b", "L40S:2", "6.18x")],
)
def test_public_calibration_points_printed_by_vllm_0_10_2(model, gpu, printed):
    result = CliRunner().invoke(cli, ["capacity", model, "--gpu", gpu, "--context", "32768",
                                      "--vllm-version", "0.10.2"])
    assert result.exit_code == 0, result.output
    assert f"Maximum concurrency for 32768 tokens per request: {printed}" in result.output


def test_hand_worked_l4_case_matches_formula(cat):
    # 22.05 GiB x 0.9 - 13.72 weights - 1.95 residual = 4.175 GiB; page = 2*16*8*64*2 = 32768 B; 12 layers/group
    kv = 22.05 * 0.9 - 13.72 - 1.95
    blocks = math.floor(kv * GIB / (32768 * 12))
    per_request = 32768 // 16 + math.ceil((127 + 2048) / 16) + 1
    cap = capacity.estimate(cat, cat.model("20b"), cat.gpu("L4"), 1, context=32768, vllm_version="0.10.2")
    assert cap.kv_cache_blocks == blocks
    assert cap.blocks_per_request == per_request == 2185
    assert cap.concurrency_text == f"{blocks / per_request:.2f}x"


def test_fp8_kv_cache_halves_the_page_and_doubles_blocks(cat):
    m, g = cat.model("20b"), cat.gpu("L4")
    bf16 = capacity.estimate(cat, m, g, 1, context=32768, vllm_version="0.10.2")
    fp8 = capacity.estimate(cat, m, g, 1, context=32768, vllm_version="0.10.2", kv_cache_dtype="fp8")
    assert fp8.kv_cache_gib_per_gpu == bf16.kv_cache_gib_per_gpu
    assert fp8.kv_cache_blocks in (2 * bf16.kv_cache_blocks, 2 * bf16.kv_cache_blocks + 1)


@pytest.mark.parametrize("tp", [2, 4])
def test_tensor_parallel_splits_kv_heads(cat, tp):
    # 120b on A100-80GB: each rank holds 8/TP KV heads, so the page is 2*16*(8/TP)*64*2 bytes.
    m, g = cat.model("120b"), cat.gpu("A100-80GB")
    cap = capacity.estimate(cat, m, g, tp, context=65536, vllm_version="0.10.2", options={})
    page = 2 * 16 * (8 // tp) * 64 * 2
    assert cap.max_num_batched_tokens == 2048  # an A100 keeps vLLM's small scheduler defaults
    kv = 79.15 * 0.9 - cap.weights_gib_per_gpu - 1.95
    assert cap.kv_cache_blocks == math.floor(kv * GIB / (page * 18))


def test_context_below_the_window_reservation(cat):
    # M = 1024 < 127 + 2048: the sliding-window group reserves only cdiv(M, 16) blocks.
    cap = capacity.estimate(cat, cat.model("20b"), cat.gpu("L4"), 1, context=1024, vllm_version="0.10.2")
    assert cap.blocks_per_request == 64 + 64 + 1


def test_async_scheduling_doubles_the_window_reservation_from_0_26(cat):
    m, g = cat.model("20b"), cat.gpu("L4")
    old = capacity.estimate(cat, m, g, 1, context=32768, vllm_version="0.25.0")
    new = capacity.estimate(cat, m, g, 1, context=32768, vllm_version="0.26.0")
    assert old.blocks_per_request == 2048 + math.ceil((127 + 2048) / 16) + 1
    assert new.blocks_per_request == 2048 + math.ceil((127 + 4096) / 16) + 1


@pytest.mark.parametrize(
    "model, kernel, tp, observed",
    [("20b", "marlin", 1, 13.72), ("120b", "marlin", 1, 65.97), ("120b", "marlin", 2, 34.32),
     ("120b", "triton", 1, 64.38)],
)
def test_computed_weights_agree_with_observed_loading(cat, model, kernel, tp, observed):
    import dataclasses

    m = dataclasses.replace(cat.model(model), observed_weights_gib={})
    computed, source = capacity.weights_gib_per_gpu(m, cat.engine(), kernel, tp)
    assert source == "computed"
    assert abs(computed - observed) / observed < 0.004


def test_checkpoint_size_follows_from_architecture(cat):
    for name in ("20b", "120b"):
        m = cat.model(name)
        dense, experts = capacity.weight_split_gib(m)
        assert abs(dense + experts - m.checkpoint_gib) < 0.01


def test_bare_120b_on_one_h100_does_not_fit_but_the_recipe_does():
    runner = CliRunner()
    bare = runner.invoke(cli, ["capacity", "120b", "--gpu", "H100", "--bare", "--context", "32768"])
    assert bare.exit_code == 1
    assert "does not fit" in bare.output and "64.38 GiB" in bare.output
    tuned = runner.invoke(cli, ["capacity", "120b", "--gpu", "H100", "--context", "32768", "--json"])
    assert tuned.exit_code == 0
    import json

    doc = json.loads(tuned.output)
    assert doc["fits"] is True and doc["gpu_memory_utilization"] == 0.95
    for key in ("model", "gpu", "count", "tensor_parallel_size", "max_model_len", "weights_gib_per_gpu",
                "kv_cache_gib_per_gpu", "max_concurrency", "fits"):
        assert key in doc


def test_too_long_context_says_does_not_fit_with_numbers(cat):
    cap = capacity.estimate(cat, cat.model("120b"), cat.gpu("L4"), 4, context=131072)
    assert not cap.fits
    assert "KV blocks" in cap.reason and str(cap.max_model_len_that_fits) in cap.reason
    fits = capacity.estimate(cat, cat.model("120b"), cat.gpu("L4"), 4, context=cap.max_model_len_that_fits)
    assert fits.fits


@pytest.mark.parametrize(
    "args, needle",
    [
        (["capacity", "30b", "--gpu", "L4"], "unknown model '30b'; choose one of"),
        (["capacity", "20b", "--gpu", "Z100"], "unknown GPU 'Z100'"),
        (["capacity", "20b", "--gpu", "T4"], "GPU T4 is not supported: compute capability 7.5"),
        (["capacity", "20b", "--gpu", "V100"], "GPU V100 is not supported"),
        (["capacity", "20b", "--gpu", "L4:3"], "GPU count 3 cannot be a tensor-parallel size"),
        (["capacity", "20b", "--gpu", "L4:x"], "must be an integer"),
        (["capacity", "20b", "--gpu", "L4:0"], "must be positive"),
        (["capacity", "20b", "--gpu", "L4", "--context", "131073"], "context 131073 is out of range"),
        (["capacity", "20b", "--gpu", "L4", "--context", "0"], "must be a positive integer"),
        (["capacity", "20b", "--gpu", "L4", "--max-num-batched-tokens", "-1"], "must be a positive integer"),
        (["capacity", "20b", "--gpu", "L4", "--gpu-memory-utilization", "1.5"], "must be in (0, 1]"),
        (["capacity", "20b", "--gpu", "L4", "--vllm-version", "0.9.0"], "older than the oldest"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(args, needle):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1

"""The planner against vLLM's public printouts and against the arithmetic worked by hand."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from launcher.cli import cli
from launcher.plan import capacity, catalog

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
     ("120b", "triton", 1, 61.43), ("20b", "triton", 1, 13.03)],
)
def test_computed_weights_agree_with_observed_loading(cat, model, kernel, tp, observed):
    import dataclasses

    m = dataclasses.replace(cat.model(model), observed_weights_gib={})
    computed, source = capacity.weights_gib_per_gpu(m, cat.engine(), kernel, tp)
    assert source == "computed"
    assert abs(computed - observed) / observed < (0.004 if kernel == "marlin" else 0.02)


def test_checkpoint_size_follows_from_architecture(cat):
    for name in ("20b", "120b"):
        m = cat.model(name)
        dense, experts = capacity.weight_split_gib(m)
        assert abs(dense + experts - m.checkpoint_gib) < 0.01


def test_120b_on_one_h100_fits_bare_from_vllm_0_26_and_the_recipe_gets_more_kv():
    # The reference's "runs out of memory" is 0.10-era (7.4 GiB activations); 0.26's measured footprint
    # (61.43 GiB weights, ~3.1 GiB activations) leaves room, and the recipe's 0.95 leaves more.
    import json

    runner = CliRunner()
    bare = json.loads(runner.invoke(cli, ["capacity", "120b", "--gpu", "H100", "--bare", "--context", "32768",
                                          "--json"]).output)
    tuned = runner.invoke(cli, ["capacity", "120b", "--gpu", "H100", "--context", "32768", "--json"])
    assert tuned.exit_code == 0
    doc = json.loads(tuned.output)
    assert bare["fits"] is True and bare["gpu_memory_utilization"] == 0.92
    assert doc["fits"] is True and doc["gpu_memory_utilization"] == 0.95
    assert doc["kv_cache_gib_per_gpu"] > bare["kv_cache_gib_per_gpu"]
    for key in ("model", "gpu", "count", "tensor_parallel_size", "max_model_len", "weights_gib_per_gpu",
                "kv_cache_gib_per_gpu", "max_concurrency", "fits"):
        assert key in doc


def test_weights_beyond_the_budget_do_not_fit_and_say_so():
    result = CliRunner().invoke(cli, ["capacity", "120b", "--gpu", "L40S", "--context", "8192"])
    assert result.exit_code == 2  # the input asks for what vLLM would refuse to start
    assert "does not fit" in result.output and "exceed" in result.output and "44.42 GiB" in result.output


def test_too_long_context_says_does_not_fit_with_numbers(cat):
    m, g = cat.model("120b"), cat.gpu("L40S")
    cap = capacity.estimate(cat, m, g, 2, context=131072, vllm_version="0.10.2", gpu_memory_utilization=0.85)
    assert not cap.fits
    assert "KV blocks" in cap.reason and str(cap.max_model_len_that_fits) in cap.reason
    fits = capacity.estimate(cat, m, g, 2, context=cap.max_model_len_that_fits, vllm_version="0.10.2",
                             gpu_memory_utilization=0.85)
    assert fits.fits


@pytest.mark.parametrize(
    "args, needle",
    [
        (["capacity", "30b", "--gpu", "L4"], "unknown model '30b'; choose one of"),
        (["capacity", "20b", "--gpu", "Z100"], "unknown GPU 'Z100'"),
        (["capacity", "20b", "--gpu", "T4"], "GPU T4 is not supported: compute capability 7.5"),
        (["capacity", "20b", "--gpu", "V100"], "GPU V100 is not supported"),
        (["capacity", "20b", "--gpu", "L4:3"], "must be 1, 2, 4 or 8"),
        (["capacity", "20b", "--gpu", "L4:x"], "must be 1, 2, 4 or 8"),
        (["capacity", "20b", "--gpu", "L4:0"], "must be 1, 2, 4 or 8"),
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


@pytest.mark.parametrize(
    "model, profile, changed, printed, kv_gib",
    [  # printed by vLLM 0.26.0 on an H200, max_model_len 131072 (benchmarks/gpu/records/*.json; the cg512 row:
       # records/startup-2026-11-30/records.tar.xz, lane0/r3/run.log).
       # `changed`: the flags that run had on top of the profile.
        ("20b", "balanced", {}, 33.02, 111.57),
        ("20b", "bare", {}, 33.12, 111.91),
        ("20b", "latency", {"max_cudagraph_capture_size": 2048}, 33.72, 113.9),   # measured before latency got 512
        ("20b", "balanced", {"max_cudagraph_capture_size": 512}, 33.15, 111.99),
        ("120b", "balanced", {}, 12.45, 63.08),
        ("120b", "bare", {}, 12.51, 63.42),
    ],
)
def test_planner_matches_vllm_0_26_on_h200_within_2_percent(cat, model, profile, changed, printed, kv_gib):
    from launcher.plan import recipes

    m, g = cat.model(model), cat.gpu("H200")
    options = {} if profile == "bare" else recipes.engine_options(cat.engine(), m, g, 1, profile)[0]
    options = {**options, **changed}
    cap = capacity.estimate(cat, m, g, 1, context=131072, vllm_version="0.26.0", options=options)
    assert abs(cap.max_concurrency / printed - 1) < 0.02
    assert abs(cap.kv_cache_gib_per_gpu / kv_gib - 1) < 0.02


@pytest.mark.parametrize("profile", ["balanced", "throughput", "latency"])
def test_every_decode_batch_of_a_profile_is_captured_as_a_cuda_graph(cat, profile):
    """A profile's CUDA-graph capture size trades start-up time (capture: 12-17 s at 512, 30-32 s at 2048 on an
    H200, benchmarks/gpu/STARTUP.md) against decode speed; it may shrink only while every decode batch the
    profile allows (max_num_seqs sequences) still runs as a captured graph."""
    from launcher.plan import recipes

    m, g = cat.model("20b"), cat.gpu("H200")
    options = recipes.engine_options(cat.engine(), m, g, 1, profile)[0]
    rules = capacity.version_rules(cat.engine(), "0.26.0")
    capture = options.get("max_cudagraph_capture_size") or rules.get("default_cudagraph_capture_size", 1024)
    seqs = options.get("max_num_seqs") or cat.engine().capacity["scheduler_defaults"]["large_gpu"]["max_num_seqs"]
    assert capture >= seqs, (profile, capture, seqs)

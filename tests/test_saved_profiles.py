"""Saved profiles (GPTOSS_SKY_HOME/profiles/NAME.yaml) through the CLI: `serve --profile NAME` renders the
profile's flags into the engine command (run in real bash on a simulated node, then parsed by vLLM 0.32.0's
own option list) and its target_qps_per_replica into the service spec; `plan` lists them; a missing,
mismatched or malformed profile is one line, exit 2."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml
from catalog_argv import expected_argv, vllm_parser
from clitools import invoke
from nodesim import Node

from launcher.plan import saved_profiles
from launcher.sky import state

KEY = "sk-saved-profile-3f9a1c"
FLAGS = {"max_num_seqs": 96, "stream_interval": 1, "max_cudagraph_capture_size": 512}


def _profile(**changes):
    data = {
        "model": "gpt-oss-20b", "gpu": "H200", "gpu_count": 1, "engine": "vllm", "engine_version": "0.32.0",
        "options": dict(FLAGS), "target_qps_per_replica": 1.75,
        "slo": {"ttft_p90_ms": 500, "tpot_p50_ms": 20},
        "bench": {"input_len": 1024, "output_len": 1024, "concurrency": 48},
        "measured": {"at": "2026-12-03T18:00:00Z", "how": "gptoss-sky tune 20b --gpu H200, dummy weights"},
    }
    data.update(changes)
    return data


def _write(name, data):
    folder = state.home() / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    (folder / f"{name}.yaml").write_text(text)


def _dryrun(*args):
    result = invoke("serve", "20b", *args, "--dryrun", "--json")
    assert result.exit_code == 0, result.stderr
    return yaml.safe_load(json.loads(result.stdout)["yaml"])


def _engine_argv(tmp_path, config):
    node = Node(tmp_path, gpu_name="NVIDIA H200", secrets={k: KEY for k in config["secrets"]}, envs=config["envs"])
    for block in ("setup", "run"):
        done = node.bash(config[block])
        assert done.returncode == 0, done.stdout
    (engine_call,) = node.engine_calls()
    return engine_call.argv, node


def _drop(argv, flags):
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in flags:
            skip = True
        else:
            out.append(word)
    return out


def test_serve_renders_the_saved_flags_and_the_measured_target_qps(tmp_path):
    _write("mine", _profile())
    config = _dryrun("--gpu", "H200", "--profile", "mine")
    assert config["service"]["replica_policy"] == {"min_replicas": 1, "max_replicas": 1,
                                                   "target_qps_per_replica": 1.75}
    argv, node = _engine_argv(tmp_path, config)
    parsed = vars(vllm_parser().parse_args(argv[1:]))
    assert (parsed["max_num_seqs"], parsed["stream_interval"], parsed["max_cudagraph_capture_size"]) == \
        ("96", "1", "512")
    for flag in ("--max-num-seqs", "--stream-interval", "--max-cudagraph-capture-size"):
        assert argv.count(flag) == 1, flag
    # everything else is the catalog's command for an H200 (the context is the planner's concern)
    ours = ["--max-num-seqs", "--stream-interval", "--max-cudagraph-capture-size", "--max-model-len"]
    assert _drop(argv, ours) == _drop(expected_argv("vllm", "20b", "H200", 1, node.home)[1:], ours)


def test_engine_arg_still_has_the_last_word_over_a_saved_profile(tmp_path):
    _write("mine", _profile())
    config = _dryrun("--profile", "mine", "--engine-arg", "--max-num-seqs 32")
    argv, _ = _engine_argv(tmp_path, config)
    assert vars(vllm_parser().parse_args(argv[1:]))["max_num_seqs"] == "32"
    accelerators = config["resources"]["accelerators"]  # the profile's GPU and count without --gpu
    assert set(accelerators.values()) == {1} and {k.split("-")[0] for k in accelerators} == {"H200"}


@pytest.mark.parametrize("args, policy", [
    (["--target-qps", "3", "--min-replicas", "1", "--max-replicas", "4"],
     {"min_replicas": 1, "max_replicas": 4, "target_qps_per_replica": 3.0}),
    (["--min-replicas", "0", "--max-replicas", "2"],
     {"min_replicas": 0, "max_replicas": 2, "target_qps_per_replica": 1.75}),
    (["--replicas", "2"], {"min_replicas": 2, "max_replicas": 2, "target_qps_per_replica": 1.75}),
])
def test_target_qps_given_wins_and_replica_counts_keep_the_measured_one(args, policy):
    _write("mine", _profile())
    assert _dryrun("--profile", "mine", *args)["service"]["replica_policy"] == policy


def test_a_catalog_profile_keeps_serves_defaults():
    service = _dryrun("--gpu", "H200", "--profile", "latency")["service"]
    assert service.get("replicas") == 1 and "replica_policy" not in service


@pytest.mark.parametrize("name, data, args, says", [
    ("other", None, [], "no such profile (catalog: balanced, throughput, latency; saved under"),
    ("big", _profile(model="gpt-oss-120b"), [], "was measured on gpt-oss-120b, not gpt-oss-20b"),
    ("h100", _profile(gpu="H100"), ["--gpu", "H200"], "was measured on H100:1, not H200: give --gpu H100:1"),
    ("two", _profile(gpu_count=2), ["--gpu", "H200:1"], "was measured on H200:2, not H200:1"),
    ("sg", _profile(engine="sglang"), [], "was measured on sglang: give --engine sglang"),
    ("gpu", _profile(gpu="Z9000"), [], "names GPU 'Z9000', which catalogs/gpus.yaml does not list"),
    ("yaml", "options: [1\n", [], "is not readable YAML"),
    ("missing", {k: v for k, v in _profile().items() if k != "target_qps_per_replica"}, [],
     "target_qps_per_replica"),
    ("extra", _profile(colour="red"), [], "colour"),
    ("zero", _profile(target_qps_per_replica=0), [], "target_qps_per_replica"),
    ("flag", _profile(options={"max_num_seqz": 8}), [], "--max-num-seqz: vllm 0.32.0 has no such option"),
    ("ours", _profile(options={"max_model_len": 4096}), [], "--max-model-len is set by gptoss-sky"),
    ("value", _profile(options={"max_num_seqs": "many"}), [], "--max-num-seqs many: vllm 0.32.0 wants an integer"),
])
def test_a_bad_saved_profile_is_one_line_exit_2(mine, name, data, args, says):
    if data is not None:
        _write(name, data)
    for command in (["plan", "20b"], ["up", "20b", "--dryrun"], ["serve", "20b", "--dryrun"]):
        result = invoke(*command, *args, "--profile", name)
        assert result.exit_code == 2, (command, result.stderr)
        assert says in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout, result.stderr
        assert "Traceback" not in result.stderr


@pytest.fixture
def mine():
    """A good profile beside the bad ones: the error names it among what is allowed."""
    _write("mine", _profile())


def test_the_missing_name_error_lists_the_saved_ones(mine):
    result = invoke("plan", "20b", "--profile", "nope")
    assert result.exit_code == 2 and "choose one of: balanced, throughput, latency, mine" in result.stderr


def test_plan_shows_the_models_saved_profiles_only():
    _write("mine", _profile())
    _write("bigger", _profile(model="gpt-oss-120b", gpu="H100", gpu_count=2))
    result = invoke("plan", "20b")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Saved profile")]
    assert lines == ["Saved profile mine: vllm on H200:1, target_qps_per_replica 1.75 at ttft-p90 <= 500 ms, "
                     "tpot-p50 <= 20 ms (1024/1024 tokens), measured 2026-12-03T18:00:00Z: --profile mine"]


def test_save_writes_a_private_file_that_loads_back_and_refuses_catalog_names():
    profile = saved_profiles.SavedProfile.model_validate(_profile())
    where = saved_profiles.save("fast-1", profile, ("balanced", "latency"))
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o600
    assert yaml.safe_load(where.read_text())["options"] == FLAGS
    assert saved_profiles.load("fast-1") == profile
    with pytest.raises(saved_profiles.UserError, match="is a catalog profile"):
        saved_profiles.save("latency", profile, ("balanced", "latency"))
    with pytest.raises(saved_profiles.UserError, match="lower-case letters"):
        saved_profiles.save("../x", profile, ())

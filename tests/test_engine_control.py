"""Engine control at launch: --engine-version, --engine-arg (checked against the engine's own option
list, refused before any pricing), --env/--secret handed to SkyPilot as it does, SkyPilot's spellings."""

from __future__ import annotations

import json

import pytest
import yaml
from clitools import invoke
from fakesky import FakeSky
from seeds import l4_deployment

from launcher.plan import capacity, catalog, engine_control, recipes
from launcher.plan import offers as plan_mod
from launcher.sky import skyapi, state


@pytest.fixture
def no_pricing(monkeypatch):
    """Fails the test if anything reaches the pricing step."""
    def refuse(*a, **k):
        raise AssertionError("priced before refusing a bad --engine-arg")
    monkeypatch.setattr(plan_mod, "build", refuse)


@pytest.mark.parametrize("arg, says", [
    ("--max-num-seq 8", "vllm 0.32.0 has no such option (did you mean --max-num-seqs?)"),
    ("--cuda-graph-sizes 64", "has no such option"),  # removed from vLLM: the engine would reject it
    ("--max-model-len 4096", "is set by gptoss-sky: set from --context"),
    ("--api-key sk-123", "never the command line"),
    ("-tp 2", "set from the GPU count"),
    ("--max-num-seqs 8 --enable-prefix-caching", "one flag per --engine-arg"),
    ("max-num-seqs 8", "give one flag and its values"),
    ("--lora-modules 'unclosed", "No closing quotation"),  # several values: shell-quoted
    # values vLLM 0.32.0's own parser refuses (catalogs/engines/options/vllm-0.32.0.values.json)
    ("--kv-cache-dtype fp9", "--kv-cache-dtype fp9: vllm 0.32.0 allows auto, bfloat16"),
    ("--max-num-seqs many", "wants an integer"),
    ("--gpu-memory-utilization high", "wants a finite number"),
    ("--gpu-memory-utilization nan", "wants a finite number"),  # argparse's float() takes nan and inf
    ("--gpu-memory-utilization inf", "wants a finite number"),
    ("--enable-prefix-caching yes", "is a switch in vllm 0.32.0: it takes no value"),
    ("--max-num-seqs", "needs a value"),
    ("--max-num-seqs 1 2", "wants an integer"),  # one value, taken whole
    ("--chat-template-content-format string --max-num-seqs 8", "one flag per --engine-arg"),
    ("--chat-template a\rb", "control characters"),  # YAML would turn \r into a line break
    ("-dp 2", "long --spelling"),
])
def test_bad_engine_args_are_refused_before_pricing(no_pricing, arg, says):
    # Each is refused by vLLM 0.32.0's own parser too (check-vllm-args), except the abbreviation
    # --max-num-seq, which argparse would expand: gptoss-sky asks for the full spelling.
    for command in (["plan", "20b"], ["up", "20b", "--dryrun"], ["serve", "20b", "--dryrun"]):
        result = invoke(*command, "--engine-arg", arg)
        assert result.exit_code == 2, (command, result.stderr)
        assert says in result.stderr and "Traceback" not in result.stderr and not result.stdout


def test_engine_args_are_checked_against_the_chosen_engines_list(no_pricing):
    result = invoke("plan", "20b", "--engine", "sglang", "--engine-arg", "--max-num-seqs 8")
    assert result.exit_code == 2 and "sglang 0.5.23 has no such option" in result.stderr
    result = invoke("plan", "20b", "--engine", "sglang", "--engine-arg", "--context-length 8192")
    assert result.exit_code == 2 and "set from --context" in result.stderr


def test_accepted_engine_args_reach_the_command_line_and_the_memory_plan():
    cat, notes = engine_control.apply(catalog.load(), "vllm", None,
                                      ["--max-num-seqs 128", "--no-enable-prefix-caching", "--kv-cache-dtype=fp8",
                                       "--override-generation-config '{\"temperature\": 1.0}'"])
    assert notes == []
    model, gpu = cat.model("20b"), cat.gpu("H100")
    recipe = recipes.build(cat, model, gpu, 1)
    argv = recipe.engine_argv()
    assert argv[argv.index("--max-num-seqs") + 1] == "128" and argv.count("--max-num-seqs") == 1
    assert "--no-enable-prefix-caching" in argv and argv[argv.index("--kv-cache-dtype") + 1] == "fp8"
    assert argv[argv.index("--override-generation-config") + 1] == '{"temperature": 1.0}'
    # fp8 KV and 128 sequences change what fits: the plan is vLLM's arithmetic on the user's flags
    plain = recipes.build(catalog.load(), model, gpu, 1)
    assert recipe.capacity.max_concurrency > 1.5 * plain.capacity.max_concurrency


def test_engine_version_0_26_renders_its_install_and_plans_with_its_rules(seeded):
    result = invoke("up", "20b", "--gpu", "H100:1", "--engine-version", "0.26.0", "--dryrun", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    config = yaml.safe_load(doc["yaml"])
    skyapi.task_from_config(config, secrets={"VLLM_API_KEY": "k"})
    assert '"vllm==0.26.0"' in config["setup"] and "0.32.0" not in config["setup"]
    assert "not a version gptoss-sky has validated" not in result.stderr  # 0.26.0 ran on the lent H200
    cat, _ = engine_control.apply(catalog.load(), "vllm", "0.26.0")
    recipe = recipes.build(cat, cat.model("20b"), cat.gpu("H100"), 1)
    assert recipe.capacity.vllm_version == "0.26.0"
    assert doc["offers"][0]["max_concurrency"] == round(recipe.capacity.max_concurrency, 2)


def test_an_older_engine_version_plans_with_that_versions_memory_defaults(seeded):
    def concurrency(*extra):
        result = invoke("plan", "20b", "--gpu", "H100:1", "--json", *extra)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)[0]["max_concurrency"], result.stderr

    pinned, _ = concurrency()
    old, warned = concurrency("--engine-version", "0.20.0")
    # 0.20 reserves the residual of vLLM <= 0.25 and 0.9 of memory, not 0.26's 0.92: fewer requests fit
    cat = catalog.load()
    rules = capacity.version_rules(cat.engine("vllm"), "0.20.0")
    assert rules["gpu_memory_utilization"] == 0.9 and old < pinned
    assert "vllm 0.20.0 is not a version gptoss-sky has validated" in warned


def test_engine_version_image_tag_follows():
    cat, _ = engine_control.apply(catalog.load(), "vllm", "0.26.0")
    assert cat.engine("vllm").image == "vllm/vllm-openai:v0.26.0"
    assert cat.engine("vllm").packages[0] == "vllm==0.26.0"


@pytest.mark.parametrize("version, says", [("latest", "invalid vLLM version"), ("0.9.0", "older than the oldest")])
def test_bad_engine_versions_are_refused(no_pricing, version, says):
    result = invoke("plan", "20b", "--engine-version", version)
    assert result.exit_code == 2 and says in result.stderr


def test_env_and_secret_reach_skypilot_as_overrides_and_the_secret_nowhere_else(seeded, server, monkeypatch):
    from openai_server import API_KEY

    secret_value = "exa-SECRET-77c1"
    monkeypatch.setenv("EXA_API_KEY", secret_value)
    fake = FakeSky(server.url.removeprefix("http://")).install(monkeypatch)
    monkeypatch.setattr(state.secrets, "token_urlsafe", lambda n: API_KEY)
    result = invoke("up", "20b", "-y", "--json", "--no-smoke", "--gpu", "H100", "--env", "HF_HUB_DISABLE_XET=1",
                    "--secret", "EXA_API_KEY")
    assert result.exit_code == 0, result.stderr
    launched = fake.calls[0][1]
    assert launched["secrets"]["EXA_API_KEY"] == secret_value and launched["secrets"]["VLLM_API_KEY"] == API_KEY
    assert launched["envs"]["HF_HUB_DISABLE_XET"] == "1" and launched["envs"]["GPTOSS_IDLE_MINUTES"] == "60"
    assert launched["task"].secrets["EXA_API_KEY"].get_secret_value() == secret_value  # a SkyPilot secret
    assert secret_value not in result.stdout + result.stderr
    assert secret_value not in yaml.safe_dump(launched["config"])
    assert not any(secret_value in p.read_text() for p in (state.home() / "deployments").glob("*.json"))


def test_dryrun_json_names_secrets_without_values(seeded, monkeypatch):
    monkeypatch.setenv("EXA_API_KEY", "exa-SECRET-1")
    result = invoke("up", "20b", "--gpu", "H100", "--dryrun", "--json", "--secret", "EXA_API_KEY", "--env", "A=b")
    doc = json.loads(result.stdout)
    assert doc["secrets"] == ["EXA_API_KEY"] and doc["envs"] == {"A": "b"} and "exa-SECRET-1" not in result.stdout


@pytest.mark.parametrize("args, says", [
    (["--secret", "NOT_SET_ANYWHERE"], "not set (or empty) in this shell"),
    (["--secret", "VLLM_API_KEY=x"], "set by gptoss-sky"),
    (["--env", "GPTOSS_IDLE_MINUTES=5"], "set by gptoss-sky"),
    (["--env", "9BAD=1"], "a variable name is letters"),
])
def test_bad_env_and_secret_are_refused_before_pricing(no_pricing, args, says):
    result = invoke("up", "20b", "--dryrun", *args)
    assert result.exit_code == 2 and says in result.stderr


def test_skypilot_spellings_are_aliases():
    result = invoke("up", "20b", "--use-spot", "--gpus", "H100", "-c", "mine", "-i", "30", "--down", "--dryrun",
                    "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    config = yaml.safe_load(doc["yaml"])
    assert doc["name"] == "gptoss-mine" and config["resources"]["use_spot"] is True
    assert config["envs"]["GPTOSS_IDLE_MINUTES"] == "30" and "H100" in json.dumps(config["resources"])
    assert invoke("up", "20b", "--cluster", "mine2", "--idle-minutes-to-autostop", "5", "--dryrun",
                  "--json").exit_code == 0
    refused = invoke("up", "20b", "--down", "--no-autostop", "--dryrun")
    assert refused.exit_code == 2 and "--down" in refused.stderr


def test_scale_resends_the_services_env_and_secrets_from_this_shell(openai_ok, monkeypatch):
    from launcher import lifecycle

    cat = catalog.load()
    fake = FakeSky(openai_ok)
    lifecycle.launch(cat, fake, cat.model("20b"), l4_deployment(cat, "gptoss-svc-x", service=True, replicas=1),
                     progress=lambda m: None, ready_timeout=10, envs={"A": "b"}, secrets={"EXA_API_KEY": "exa-1"})
    record = state.load("gptoss-svc-x")
    assert record.user_secrets == ["EXA_API_KEY"] and record.user_envs == {"A": "b"}
    assert "exa-1" not in state.record_path("gptoss-svc-x").read_text()  # names only, never values
    monkeypatch.delenv("EXA_API_KEY", raising=False)
    with pytest.raises(Exception, match="served with --secret EXA_API_KEY: export it"):
        lifecycle.scale(fake, "gptoss-svc-x", replicas=2, min_replicas=None, max_replicas=None, target_qps=None)
    monkeypatch.setenv("EXA_API_KEY", "exa-2")
    lifecycle.scale(fake, "gptoss-svc-x", replicas=2, min_replicas=None, max_replicas=None, target_qps=None)
    task = fake.calls[-1][1]["task"]
    assert task.secrets["EXA_API_KEY"].get_secret_value() == "exa-2" and task.envs["A"] == "b"

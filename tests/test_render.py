"""Generated YAMLs: valid for SkyPilot 0.14 (its own parser and service checks), safe, and up to date."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from launcher.cli import cli
from launcher.node import render
from launcher.plan import catalog, recipes
from launcher.sky import skyapi

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("tasks/*.sky.yaml"),
                                                           *ROOT.glob("services/*.sky.yaml")])


def test_at_least_six_files_per_model_and_kind():
    for kind in ("tasks", "services"):
        for model in ("20b", "120b"):
            assert len([p for p in COMMITTED if p.startswith(f"{kind}/{model}-")]) >= 6


@pytest.mark.parametrize("path", COMMITTED)
def test_committed_yaml_is_valid_for_skypilot(path):
    config = yaml.safe_load((ROOT / path).read_text())
    secret = "SGLANG_API_KEY" if "sglang" in path else "VLLM_API_KEY"
    assert config["secrets"] == {secret: None}
    task = skyapi.task_from_config(config, secrets={secret: "k"})
    assert "infra" not in str(config["resources"])
    assert "--api-key" not in config["run"]  # never on a command line: environment, or a 0600 file
    if path.startswith("services/"):
        probe = config["service"]["readiness_probe"]
        assert probe["path"] not in ("", "/")
        assert probe["headers"]["Authorization"] == f"Bearer ${secret}"
        assert task.service.readiness_path == "/v1/chat/completions"
        # SkyPilot substituted the secret into the probe header at parse time.
        assert task.service.readiness_headers["Authorization"] == "Bearer k"
    else:
        assert task.service is None


def test_sglang_files_cover_hopper_and_blackwell_only_and_keep_the_key_off_argv():
    sglang = [p for p in COMMITTED if "sglang" in p]
    assert len([p for p in sglang if p.startswith("tasks/20b-")]) >= 3
    assert len([p for p in sglang if p.startswith("services/120b-")]) >= 3
    assert all(any(g in p for g in ("-h100", "-h200", "-b200", "-any")) for p in sglang)
    run = yaml.safe_load((ROOT / "tasks/120b-h200-sglang.sky.yaml").read_text())["run"]
    assert "umask 077; printf 'api-key: \"%s\"\\n' \"$SGLANG_API_KEY\"" in run
    assert '--config "$HOME/gptoss-sky/sglang-auth.yaml"' in run
    assert "--kv-cache-dtype fp8_e4m3" in run and "--tool-call-parser gpt-oss" in run


def test_sglang_refuses_gpus_its_recipe_does_not_cover():
    result = CliRunner().invoke(cli, ["plan", "20b", "--engine", "sglang", "--gpu", "L4", "--clouds", "aws"])
    assert result.exit_code == 2 and "sglang does not serve gpt-oss on L4" in result.output


def test_committed_files_are_up_to_date():
    result = CliRunner().invoke(cli, ["render", "--check", "--root", str(ROOT), "--no-validate"])
    assert result.exit_code == 0, result.output


def test_check_catches_a_stale_and_a_leftover_file(tmp_path):
    for folder in ("tasks", "services"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    victim = tmp_path / "tasks" / "20b-l4.sky.yaml"
    victim.write_text(victim.read_text().replace("--max-model-len 32768", "--max-model-len 9999"))
    (tmp_path / "services" / "old-gpu.sky.yaml").write_text(f"# old\n{render.MARKER} from catalogs/\nname: x\n")
    result = CliRunner().invoke(cli, ["render", "--check", "--root", str(tmp_path), "--no-validate"])
    assert result.exit_code == 2
    assert "tasks/20b-l4.sky.yaml" in result.output and "services/old-gpu.sky.yaml" in result.output
    fixed = CliRunner().invoke(cli, ["render", "--root", str(tmp_path), "--no-validate"])
    assert fixed.exit_code == 0
    assert not (tmp_path / "services" / "old-gpu.sky.yaml").exists()
    assert "--max-model-len 32768" in victim.read_text()


def test_engine_commands_cover_every_file_and_gpu_choice():
    result = CliRunner().invoke(cli, ["render", "--engine-commands"])
    lines = result.output.splitlines()
    headers = [line for line in lines if line.startswith("# ")]
    commands = [line for line in lines if not line.startswith("# ")]
    assert len(headers) == len(commands)
    starts = ("vllm serve openai/gpt-oss-", "python -m gptoss_guard sglang.launch_server --model-path openai/")
    assert all(c.startswith(starts) for c in commands)
    assert {h.split()[1] for h in headers} == set(COMMITTED)
    any_120b = [h for h in headers if h.startswith("# tasks/120b-any.sky.yaml")]
    assert len(any_120b) >= 6  # one command per GPU the optimizer may pick


def test_run_script_branch_runs_exactly_the_printed_command():
    cat = catalog.load()
    deployment = render.committed_deployments(cat)["tasks/120b-any.sky.yaml"]
    config = render.render_config(cat, deployment)
    for _, command in render.engine_commands(deployment):
        assert f"    {command} > >(engine_log) 2>&1 &\n" in config["run"]


def test_any_gpu_case_tries_the_80gb_a100_before_the_40gb_one():
    cat = catalog.load()
    run = render.render_config(cat, render.committed_deployments(cat)["tasks/20b-any.sky.yaml"])["run"]
    assert run.index("*A100*80GB*:1)") < run.index("*A100*:1)")


def test_any_gpu_task_lets_the_optimizer_choose_among_all_spellings():
    config = yaml.safe_load((ROOT / "tasks/20b-any.sky.yaml").read_text())
    accelerators = config["resources"]["accelerators"]
    assert isinstance(accelerators, dict) and {"L4", "H100", "H100-SXM", "A100-80GB-SXM"} <= set(accelerators)
    config = yaml.safe_load((ROOT / "tasks/120b-any.sky.yaml").read_text())
    counts = {list(c["accelerators"].items())[0] for c in config["resources"]["any_of"]}
    assert ("L40S", 2) in counts and ("H100", 1) in counts


def test_image_option_renders_the_official_image_without_installing():
    cat = catalog.load()
    recipe = recipes.build(cat, cat.model("20b"), cat.gpu("H100"), 1)
    config = render.render_config(cat, render.Deployment(name="x", recipes=(recipe,), image=True))
    assert config["resources"]["image_id"] == "docker:vllm/vllm-openai:v0.32.0"
    assert "uv pip install" not in config["setup"]
    skyapi.task_from_config(config, secrets={"VLLM_API_KEY": "k"})


def test_dummy_weights_render_load_format_dummy_and_skip_the_download():
    # Regression: the run block served the repo without --revision while setup downloaded only the pinned
    # revision (no refs/main), so the engine found no snapshot under HF_HUB_OFFLINE=1.
    cat = catalog.load()
    recipe = recipes.build(cat, cat.model("120b"), cat.gpu("H200"), 1, dummy_weights=True)
    config = render.render_config(cat, render.Deployment(name="x", recipes=(recipe,), service=True))
    assert "--load-format dummy" in config["run"]
    assert f"--revision {recipe.model.revision}" in config["run"]
    assert f"--revision {recipe.model.revision}" in config["setup"]
    assert "--include '*.json'" in config["setup"] and "--exclude 'original/*'" not in config["setup"]
    skyapi.task_from_config(config, secrets={"VLLM_API_KEY": "k"})


def test_setup_pins_vllm_revision_and_fetches_harmony_vocab():
    text = (ROOT / "tasks/120b-h100.sky.yaml").read_text()
    assert '"vllm==0.32.0"' in text and "--torch-backend=auto" in text
    assert "--revision b5c939de8f754692c1647ca79fbf85e8c1e70f8a --exclude 'original/*' --exclude 'metal/*'" in text
    assert "o200k_base.tiktoken" in text and "export TIKTOKEN_ENCODINGS_BASE=" in text


def test_every_generated_file_carries_the_generated_by_line():
    for path, text in render.generate_all(catalog.load()).items():
        assert text.splitlines()[1].startswith("# Generated by `gptoss-sky render`"), path


def test_render_never_deletes_or_overwrites_a_file_it_did_not_generate(tmp_path):
    for folder in ("tasks", "services"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    mine = tmp_path / "tasks" / "train.sky.yaml"
    mine.write_text("name: my-training-run\nrun: python train.py\n")
    check = CliRunner().invoke(cli, ["render", "--check", "--root", str(tmp_path), "--no-validate"])
    assert check.exit_code == 0, check.output  # a user's own file is not "stale"
    assert CliRunner().invoke(cli, ["render", "--root", str(tmp_path), "--no-validate"]).exit_code == 0
    assert mine.read_text() == "name: my-training-run\nrun: python train.py\n"
    # A user's file where render would write: refused, nothing written, the file untouched.
    taken = tmp_path / "services" / "20b-l4.sky.yaml"
    taken.write_text("name: hand-tuned\n")
    stale = tmp_path / "tasks" / "20b-l4.sky.yaml"
    stale.write_text(stale.read_text().replace("--max-model-len 32768", "--max-model-len 9999"))
    result = CliRunner().invoke(cli, ["render", "--root", str(tmp_path), "--no-validate"])
    assert result.exit_code == 2 and "services/20b-l4.sky.yaml" in result.output and "Traceback" not in result.output
    assert taken.read_text() == "name: hand-tuned\n" and "--max-model-len 9999" in stale.read_text()
    check = CliRunner().invoke(cli, ["render", "--check", "--root", str(tmp_path), "--no-validate"])
    assert check.exit_code == 2 and "services/20b-l4.sky.yaml" in check.output


def test_render_defaults_to_the_checkout_not_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "train.sky.yaml").write_text("name: mine\n")
    result = CliRunner().invoke(cli, ["render", "--check", "--no-validate"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["tasks", "train.sky.yaml"]

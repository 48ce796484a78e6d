"""More of the family: the gpt-oss-safeguard fine-tunes as catalog models sharing their base's shapes,
and --model-source REPO[@REVISION] for any fine-tune of a gpt-oss base."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import pytest
import yaml
from clitools import invoke

from launcher.errors import CatalogError
from launcher.node import render
from launcher.plan import catalog, recipes, throughput
from launcher.sky import skyapi


@pytest.mark.parametrize("alias, base", [("safeguard-20b", "gpt-oss-20b"),
                                         ("openai/gpt-oss-safeguard-120b", "gpt-oss-120b")])
def test_safeguard_models_have_their_own_repo_and_pin_and_their_bases_shapes(alias, base):
    cat = catalog.load()
    m, b = cat.model(alias), cat.models[base]
    assert m.base == base and m.hf_repo.startswith("openai/gpt-oss-safeguard-")
    assert re.fullmatch(r"[0-9a-f]{40}", m.revision) and m.revision != b.revision
    assert m.served_names[0] == m.hf_repo
    assert (m.architecture, m.checkpoint_gib, m.observed_weights_gib) == (b.architecture, b.checkpoint_gib,
                                                                          b.observed_weights_gib)
    gpu = cat.gpu("H100")
    count = 1 if base == "gpt-oss-20b" else 2
    mine, theirs = recipes.build(cat, m, gpu, count), recipes.build(cat, b, gpu, count)
    assert dataclasses.replace(mine.capacity, model=b.name) == theirs.capacity  # all but the name
    assert mine.max_model_len == theirs.max_model_len
    assert throughput.estimate(cat, m.name, "H100", count) == throughput.estimate(cat, b.name, "H100", count)
    argv = mine.engine_argv()
    assert argv[2] == m.hf_repo and argv[argv.index("--revision") + 1] == m.revision


def test_render_writes_no_files_for_fine_tunes():
    paths = render.committed_deployments(catalog.load())
    assert paths and not any("safeguard" in p for p in paths)


def test_up_safeguard_dryrun_is_valid_skypilot_yaml_downloading_its_pin():
    result = invoke("up", "safeguard-20b", "--gpu", "H100", "--dryrun", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    config = yaml.safe_load(doc["yaml"])
    skyapi.task_from_config(config, secrets={"VLLM_API_KEY": "k"})
    pin = catalog.load().model("safeguard-20b").revision
    assert doc["name"] == "gptoss-safeguard-20b"
    assert f"hf download openai/gpt-oss-safeguard-20b --revision {pin}" in config["setup"]
    assert "--served-model-name openai/gpt-oss-safeguard-20b gpt-oss-safeguard-20b" in config["run"]


def test_model_source_serves_a_fine_tune_sized_as_its_base():
    sha = "0123456789abcdef0123456789abcdef01234567"
    result = invoke("up", "20b", "--gpu", "H100", "--dryrun", "--json",
                    "--model-source", f"acme/gpt-oss-20b-legal@{sha}")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    config = yaml.safe_load(doc["yaml"])
    assert f"hf download acme/gpt-oss-20b-legal --revision {sha}" in config["setup"]
    assert f"vllm serve acme/gpt-oss-20b-legal --revision {sha} --served-model-name acme/gpt-oss-20b-legal" \
        in config["run"]
    base = json.loads(invoke("up", "20b", "--gpu", "H100", "--dryrun", "--json").stdout)
    assert doc["offers"][0]["max_concurrency"] == base["offers"][0]["max_concurrency"]
    unpinned = invoke("plan", "120b", "--gpu", "H100:2", "--json", "--model-source", "acme/ft")
    assert unpinned.exit_code == 0 and "is not pinned" in unpinned.stderr


@pytest.mark.parametrize("spec", ["not-a-repo", "acme/ft@bad revision", "/ft", "acme/ft@"])
def test_bad_model_source_is_exit_2(spec):
    result = invoke("plan", "20b", "--model-source", spec)
    if spec == "acme/ft@":  # an empty revision means "not pinned", as with no @ at all
        assert result.exit_code == 0, result.stderr
        return
    assert result.exit_code == 2 and f"--model-source {spec!r}" in result.stderr and "Traceback" not in result.stderr


def test_a_base_that_is_not_a_model_is_a_catalog_error(tmp_path, monkeypatch):
    root = tmp_path / "catalogs"
    shutil.copytree(catalog.catalog_dir(), root)
    text = (root / "models.yaml").read_text().replace("base: gpt-oss-20b", "base: gpt-oss-21b")
    (root / "models.yaml").write_text(text)
    with pytest.raises(CatalogError, match="base 'gpt-oss-21b' is not a model"):
        catalog.load(str(root))

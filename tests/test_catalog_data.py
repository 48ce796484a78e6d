"""Data lives in catalogs/, read from one place: editing the catalog changes what the commands do (the price
snapshot's identity, the eval names, the recipe policy), with no constant in code to update beside it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from clitools import invoke

from launcher.operate import doctor

SOURCE = Path(__file__).resolve().parents[1] / "catalogs"
README = Path(__file__).resolve().parents[1] / "README.md"


# --- the price snapshot: date and clouds in catalogs/prices/snapshot.yaml ---------------------

def test_the_snapshot_date_plan_and_doctor_show_is_the_catalogs(edit):
    edit("prices/snapshot.yaml", lambda d: d.update(date="2027-02"))
    result = invoke("plan", "20b", "--clouds", "lambda", "--json")
    assert result.exit_code == 0, result.stderr
    assert {o["price_source"] for o in json.loads(result.stdout)} == {"bundled snapshot 2027-02"}
    check = doctor.check_catalogs(path_of=lambda cloud: f"/nonexistent/{cloud}/vms.csv")
    assert "2027-02" in check.detail


def test_the_snapshot_clouds_are_the_ones_plan_and_doctor_use(edit, tmp_path):
    edit("prices/snapshot.yaml", lambda d: d.update(clouds=["lambda", "runpod"]))
    result = invoke("plan", "20b", "--json")  # no API server: every snapshot cloud is priced
    assert result.exit_code == 0, result.stderr
    assert {o["cloud"] for o in json.loads(result.stdout)} <= {"lambda", "runpod"}
    asked = []
    doctor.check_catalogs(path_of=lambda cloud: asked.append(cloud) or str(tmp_path / "none"))
    assert asked == ["lambda", "runpod"]


def test_a_snapshot_cloud_without_its_price_file_is_one_line(edit):
    edit("prices/snapshot.yaml", lambda d: d["clouds"].append("azure"))
    result = invoke("plan", "20b", "--json")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "Error: prices/snapshot.yaml: clouds azure have no v8/<cloud>/vms.csv beside it"


# --- eval names: catalogs/evals.yaml is what `eval --eval` accepts --------------------------

EVAL = ("eval", "--endpoint", "http://127.0.0.1:9", "--model", "openai/gpt-oss-20b", "--python", "/nonexistent",
        "--json")


def test_an_eval_added_to_the_catalog_is_accepted_by_the_cli(edit):
    refused = invoke(*EVAL, "--eval", "healthbench")
    assert refused.exit_code == 2 and "Invalid value for '--eval': 'healthbench' is not one of gpqa, aime25" \
        in refused.stderr
    edit("evals.yaml", lambda d: d["evals"].update(healthbench={
        "questions": 1000, "reference": {"openai/gpt-oss-20b": {"low": 40.0, "medium": 45.0, "high": 50.0}}}))
    accepted = invoke(*EVAL, "--eval", "healthbench")
    # Past the option and the reference lookup: it stops at the interpreter that would run gpt_oss.evals.
    assert accepted.exit_code == 2 and "Invalid value" not in accepted.stderr
    assert "/nonexistent" in accepted.stderr


def test_an_eval_removed_from_the_catalog_is_refused_and_the_default_follows(edit):
    edit("evals.yaml", lambda d: d["evals"].pop("gpqa"))
    assert "is not one of aime25" in invoke(*EVAL, "--eval", "gpqa").stderr
    help_text = invoke("eval", "--help").stdout
    assert "[aime25]" in help_text and "gpqa" not in help_text.split("--reasoning-effort")[0]


# --- recipe policy: catalogs/recipes.yaml -------------------------------------------------------

def _l4_context() -> int:
    result = invoke("capacity", "20b", "--gpu", "L4", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["max_model_len"]


def test_the_recipe_policy_is_the_catalogs(edit):
    assert _l4_context() == 32768  # 5.5 requests of 32k fit on one L4; 4 are asked
    edit("recipes.yaml", lambda d: d.update(min_concurrency=6))
    assert _l4_context() == 16384
    edit("recipes.yaml", lambda d: d.update(context_steps=[131072, 65536, 49152, 32768, 16384]))
    assert _l4_context() == 16384  # 6 are still asked: no step of 32k or more holds them
    edit("recipes.yaml", lambda d: d.update(min_concurrency=4))
    assert _l4_context() == 32768


def test_a_context_ladder_that_does_not_end_at_min_context_is_one_line(edit):
    edit("recipes.yaml", lambda d: d.update(context_steps=[16384, 32768]))
    result = invoke("capacity", "20b", "--gpu", "L4")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "recipes.yaml: context_steps [16384, 32768] must run from the longest" in result.stderr


def test_readme_states_the_policy_the_catalog_holds():
    policy = yaml.safe_load((SOURCE / "recipes.yaml").read_text())
    section = README.read_text().split("### How `up` picks the GPU", 1)[1].split("\n2. ", 1)[0]
    found = re.search(r"at least \*\*(\d+) concurrent full-length requests at a context of at least ([\d,]+) tokens",
                      section)
    assert found, section
    assert int(found[1]) == policy["min_concurrency"] and int(found[2].replace(",", "")) == policy["min_context"]
    assert "/".join(str(s) for s in policy["context_steps"]) in section

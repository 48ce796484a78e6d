"""Accuracy check: run OpenAI's `gpt_oss.evals` against an endpoint and compare with the reference.

Owns: building the eval subprocess (the API key goes in the environment as OPENAI_API_KEY, never in
argv), parsing its score, the reference table loader (`catalogs/evals.yaml`, data not code) and the
pass rule. Must not import click, rich or sky; never prints.

Pass rule: with reference accuracy p (a fraction) and n distinct questions scored, the run fails
when   score < p - max(Z * sqrt(p * (1 - p) / n), FLOOR)
i.e. more than two binomial standard errors below the reference, and never closer than FLOOR
(3 points) so sampling noise on a good deployment does not fail it. Full runs score every question
8 times; repeats of one question are correlated, so n is the number of distinct questions.

`gpt_oss.evals` (PyPI `gpt-oss`, Python >= 3.12) is run with the interpreter given by `python=`
(or $GPTOSS_SKY_EVALS_PYTHON), so it may live in its own virtual environment. Its CLI rejects
`--examples` unless `--debug` (gpt-oss 0.0.9 asserts n_repeats == 1, and --debug reduces GPQA to a
single question), so subset runs go through `_evals_driver.py`, which builds the same eval objects
with n_repeats=1.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from launcher.errors import CatalogError, EndpointError, UserError

EFFORTS = ("low", "medium", "high")  # gpt-oss's reasoning efforts; catalogs/evals.yaml gives each a reference
Z = 2.0
FLOOR_PP = 3.0  # percentage points
PYTHON_ENV = "GPTOSS_SKY_EVALS_PYTHON"
RESULT_MARKER = "GPTOSS_SKY_EVAL_RESULT "
def _references_path() -> Path:
    from launcher.plan.catalog import catalog_dir  # the same lookup as every other catalog (checkout or wheel)

    return catalog_dir() / "evals.yaml"

DRIVER = Path(__file__).resolve().with_name("_evals_driver.py")


class EvalsNotInstalledError(UserError):
    """`gpt_oss.evals` cannot be imported by the chosen interpreter."""


@dataclass(frozen=True)
class Verdict:
    """Score vs reference, in percent; `ok` is False when clearly below."""

    eval: str
    model: str
    reasoning_effort: str
    examples: int
    score: float
    reference: float
    margin: float
    threshold: float
    ok: bool

    @property
    def detail(self) -> str:
        relation = "within" if self.ok else "below"
        return (
            f"{self.eval} {self.reasoning_effort}: {self.score:.1f}% vs reference {self.reference:.1f}% "
            f"({relation} the {self.margin:.1f}-point margin at n={self.examples}; threshold {self.threshold:.1f}%)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "detail": self.detail}


@dataclass(frozen=True)
class References:
    source: str
    questions: dict[str, int]  # eval -> distinct questions in a full run
    table: dict[str, dict[str, dict[str, float]]]  # eval -> model -> effort -> percent

    def lookup(self, eval_name: str, model: str, effort: str) -> float:
        models = self.table.get(eval_name)
        if models is None:
            raise UserError(f"no reference for eval {eval_name!r}; known: {sorted(self.table)}")
        key = match_model(model, list(models))
        return models[key][effort]


def load_references(path: Path | None = None) -> References:
    """Read catalogs/evals.yaml, checked by type (launcher/plan/schema.py); malformed content is a CatalogError."""
    from launcher.plan import schema

    path = path or _references_path()
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    doc = schema.check(schema.EvalsFile, document, path.name)
    questions = {name: entry.questions for name, entry in doc.evals.items()}
    table = {name: {model: scores.model_dump() for model, scores in entry.reference.items()}
             for name, entry in doc.evals.items()}
    return References(doc.source, questions, table)


def eval_names() -> list[str]:
    """The evals catalogs/evals.yaml has references for, in its order: what `eval --eval` accepts."""
    return list(load_references().table)


def match_model(model: str, known: list[str]) -> str:
    """The reference key for a served model name: exact, then by basename (`gpt-oss-20b`)."""
    if model in known:
        return model
    base = model.rsplit("/", 1)[-1].lower()
    for key in known:
        if key.rsplit("/", 1)[-1].lower() == base:
            return key
    for key in sorted(known, key=len, reverse=True):  # "gpt-oss-120b" before "gpt-oss-20b"
        if re.search(rf"(^|[^0-9]){re.escape(key.rsplit('/', 1)[-1].lower())}", base):
            return key
    raise UserError(f"no accuracy reference for model {model!r}; known: {known}")


def margin_pp(reference_pct: float, n: int, z: float = Z, floor_pp: float = FLOOR_PP) -> float:
    """Allowed shortfall in percentage points: max(z binomial standard errors at n, floor)."""
    p = reference_pct / 100.0
    se = math.sqrt(p * (1.0 - p) / max(n, 1))
    return max(z * se * 100.0, floor_pp)


def compare(
    eval_name: str, model: str, effort: str, score_pct: float, reference_pct: float, n: int
) -> Verdict:
    margin = margin_pp(reference_pct, n)
    threshold = reference_pct - margin
    return Verdict(eval_name, model, effort, n, round(score_pct, 2), reference_pct, round(margin, 2),
                   round(threshold, 2), score_pct >= threshold)


def parse_score(output: str) -> float:
    """The score (a fraction in [0, 1]) from gpt_oss.evals output or from the driver's marker line.

    gpt_oss.evals prints `Writing results to /tmp/<stem>.json` (a JSON file with "score") and ends
    with a Python-repr list `[{'eval_name': ..., 'model_name': ..., 'metric': 0.61}]`.
    """
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARKER):
            return float(json.loads(line[len(RESULT_MARKER):])["score"])
    for line in reversed(output.splitlines()):
        match = re.match(r"Writing results to (\S+\.json)\s*$", line.strip())
        if match:
            try:
                return float(json.loads(Path(match.group(1)).read_text())["score"])
            except (OSError, ValueError, KeyError, TypeError):
                break
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("[{") and "metric" in line:
            try:
                rows = ast.literal_eval(line)
                return float(rows[-1]["metric"])
            except (ValueError, SyntaxError, KeyError, TypeError, IndexError):
                continue
    raise EndpointError("could not find a score in the gpt_oss.evals output")


def evals_python(python: str | None = None) -> str:
    return python or os.environ.get(PYTHON_ENV) or sys.executable


def check_installed(python: str) -> None:
    """Raise EvalsNotInstalledError, naming the pip command, when `gpt_oss.evals` is missing."""
    try:
        probe = subprocess.run(
            [python, "-c", "import gpt_oss.evals.gpqa_eval, gpt_oss.evals.aime_eval"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EvalsNotInstalledError(f"cannot run {python}: {exc}") from exc
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        raise EvalsNotInstalledError(
            f"gpt_oss.evals is not importable by {python} ({last}); install it with "
            f"`{python} -m pip install 'gpt-oss[eval]'` (needs Python >= 3.12), or point "
            f"${PYTHON_ENV} / --python at an interpreter that has it"
        )


def build_command(
    python: str,
    base_url: str,
    model: str,
    eval_name: str,
    effort: str,
    examples: int | None,
    sampler: str = "responses",
    n_threads: int | None = None,
) -> list[str]:
    """argv for the eval; the API key is NOT in it (it goes in OPENAI_API_KEY)."""
    api = base_url.rstrip("/")
    api = api if api.endswith("/v1") else api + "/v1"
    if examples is None:
        argv = [python, "-m", "gpt_oss.evals"]
    else:
        argv = [python, str(DRIVER), "--examples", str(examples)]
    argv += ["--base-url", api, "--model", model, "--eval", eval_name, "--reasoning-effort", effort,
             "--sampler", sampler]
    if n_threads is not None:
        argv += ["--n-threads", str(n_threads)]
    return argv


def run_eval(
    base_url: str,
    api_key: str | None,
    model: str,
    eval_name: str = "gpqa",
    effort: str = "low",
    examples: int | None = None,
    *,
    python: str | None = None,
    sampler: str = "responses",
    n_threads: int | None = None,
    show_progress: bool = True,
    timeout: float | None = None,
    references: References | None = None,
) -> Verdict:
    """Run one eval at one effort and compare its score with the reference table."""
    references = references or load_references()
    if eval_name not in references.table:
        raise UserError(f"unknown eval {eval_name!r}; choose from {list(references.table)} (catalogs/evals.yaml)")
    if effort not in EFFORTS:
        raise UserError(f"unknown reasoning effort {effort!r}; choose from {list(EFFORTS)}")
    reference = references.lookup(eval_name, model, effort)  # fail before spending GPU time
    python = evals_python(python)
    check_installed(python)
    env = {**os.environ, "OPENAI_API_KEY": api_key or "EMPTY"}
    argv = build_command(python, base_url, model, eval_name, effort, examples, sampler, n_threads)
    try:
        done = subprocess.run(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=None if show_progress else subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise EndpointError(f"gpt_oss.evals did not finish within {timeout:g} s") from exc
    if done.returncode != 0:
        tail = ((done.stderr or "") + done.stdout).strip().splitlines()[-1:] or ["no output"]
        text = tail[0].replace(api_key, "***") if api_key else tail[0]
        raise EndpointError(f"gpt_oss.evals exited with status {done.returncode}: {text}")
    score = parse_score(done.stdout) * 100.0
    n = examples if examples is not None else references.questions[eval_name]
    return compare(eval_name, model, effort, score, reference, n)

"""launcher/verify/evals.py and `gptoss-sky eval`: reference table, pass rule, output parsing, wiring."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from clitools import invoke  # noqa: E402
from openai_server import API_KEY, FakeServer

from launcher.errors import CatalogError, UserError
from launcher.verify import evals as evals_lib

FAKE_GPT_OSS = Path(__file__).parent / "fixtures" / "fake_gpt_oss"

# Recorded tail of a real `python -m gpt_oss.evals` run (gpt-oss 0.0.9 prints a Python repr list).
RECORDED_OUTPUT = """\
Running with args Namespace(model='openai/gpt-oss-20b', reasoning_effort='low', sampler='responses')
_DEBUG
Writing report to /tmp/gpqa_openai__gpt-oss-20b-low_temp1.0_20250901_120000.html
{'chars': 3087.5, 'chars:std': 2410.1, 'score': 0.5694, 'score:std': 0.4951}
Writing results to /nonexistent/gpqa_openai__gpt-oss-20b-low_temp1.0_20250901_120000.json
Writing all results to /nonexistent/gpqa_openai__gpt-oss-20b-low_temp1.0_20250901_120000_allresults.json
[{'eval_name': 'gpqa', 'model_name': 'openai__gpt-oss-20b-low_temp1.0_20250901_120000', 'metric': 0.5694}]
"""


def test_reference_table_matches_the_published_numbers() -> None:
    refs = evals_lib.load_references()
    assert refs.source
    expected = {
        ("gpqa", "openai/gpt-oss-20b"): (56.1, 63.5, 72.1),
        ("aime25", "openai/gpt-oss-20b"): (35.0, 74.6, 86.3),
        ("gpqa", "openai/gpt-oss-120b"): (65.0, 70.3, 79.3),
        ("aime25", "openai/gpt-oss-120b"): (52.5, 74.2, 91.7),
    }
    for (eval_name, model), values in expected.items():
        assert tuple(refs.lookup(eval_name, model, e) for e in evals_lib.EFFORTS) == values
    assert refs.questions == {"gpqa": 198, "aime25": 30}


def test_model_names_match_by_basename_and_120b_is_not_20b() -> None:
    known = ["openai/gpt-oss-20b", "openai/gpt-oss-120b"]
    assert evals_lib.match_model("gpt-oss-120b", known) == "openai/gpt-oss-120b"
    assert evals_lib.match_model("/models/gpt-oss-20b", known) == "openai/gpt-oss-20b"
    assert evals_lib.match_model("my-gpt-oss-120b-awq", known) == "openai/gpt-oss-120b"
    with pytest.raises(UserError, match="no accuracy reference"):
        evals_lib.match_model("llama-3-8b", known)


def test_malformed_catalog_is_a_catalog_error(tmp_path: Path) -> None:
    bad = tmp_path / "evals.yaml"
    bad.write_text("evals:\n  gpqa:\n    reference: {}\n")  # no `questions`
    with pytest.raises(CatalogError, match="evals.yaml"):
        evals_lib.load_references(bad)


def test_margin_is_two_standard_errors_with_a_floor() -> None:
    # p = 0.561, n = 198: SE = sqrt(0.561 * 0.439 / 198) = 3.53 points, so the margin is 7.05.
    assert evals_lib.margin_pp(56.1, 198) == pytest.approx(7.053, abs=0.01)
    # AIME25 (30 questions) at 86.3%: SE 6.28 points, margin 12.56.
    assert evals_lib.margin_pp(86.3, 30) == pytest.approx(12.56, abs=0.01)
    # Huge n: two standard errors would be tiny; the 3-point floor applies.
    assert evals_lib.margin_pp(56.1, 100_000) == 3.0


@pytest.mark.parametrize(
    ("score", "n", "ok"),
    [
        (56.1, 198, True),  # at the reference
        (49.2, 198, True),  # 6.9 points below: within 2 SE (7.05)
        (48.9, 198, False),  # 7.2 points below: clearly below
        (40.0, 20, True),  # 16 points below but only 20 questions: SE 11.1, margin 22.2
        (30.0, 20, False),  # 26 points below at 20 questions
        (80.0, 198, True),  # above is always fine
    ],
)
def test_compare_recorded_scores(score: float, n: int, ok: bool) -> None:
    verdict = evals_lib.compare("gpqa", "openai/gpt-oss-20b", "low", score, 56.1, n)
    assert verdict.ok is ok
    assert verdict.threshold == pytest.approx(56.1 - evals_lib.margin_pp(56.1, n), abs=0.01)
    assert ("within" if ok else "below") in verdict.detail


def test_parse_score_from_recorded_output_repr_line() -> None:
    # The results file does not exist here, so the final repr line is used.
    assert evals_lib.parse_score(RECORDED_OUTPUT) == pytest.approx(0.5694)


def test_parse_score_prefers_the_results_file(tmp_path: Path) -> None:
    results = tmp_path / "gpqa.json"
    results.write_text(json.dumps({"chars": 1.0, "score": 0.625}))
    output = f"Writing report to /tmp/x.html\nWriting results to {results}\n"
    assert evals_lib.parse_score(output) == 0.625


def test_parse_score_from_driver_marker_and_missing_score() -> None:
    assert evals_lib.parse_score('noise\nGPTOSS_SKY_EVAL_RESULT {"score": 0.4, "metrics": {}}\n') == 0.4
    with pytest.raises(Exception, match="could not find a score"):
        evals_lib.parse_score("Traceback (most recent call last):\n  boom\n")


def test_key_is_not_in_argv() -> None:
    argv = evals_lib.build_command("py", "http://h:8000", "openai/gpt-oss-20b", "gpqa", "high", None)
    assert argv[:3] == ["py", "-m", "gpt_oss.evals"]
    assert argv[argv.index("--base-url") + 1] == "http://h:8000/v1"
    assert argv[argv.index("--reasoning-effort") + 1] == "high"
    subset = evals_lib.build_command("py", "http://h:8000/v1", "m", "aime25", "low", 10)
    assert subset[1].endswith("_evals_driver.py") and subset[subset.index("--examples") + 1] == "10"


# -- end to end through the CLI, with a stand-in gpt_oss package -----------------------------------




@pytest.fixture
def fake_gpt_oss(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("PYTHONPATH", str(FAKE_GPT_OSS))
    monkeypatch.setenv(evals_lib.PYTHON_ENV, sys.executable)
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_GPT_OSS_ARGV", str(argv_file))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # its results file, as gpt_oss writes one to the temp folder
    return argv_file


def test_cli_full_run_passes_at_the_reference(server: FakeServer, fake_gpt_oss: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_GPT_OSS_SCORE", "0.55")
    result = invoke("eval", "--endpoint", server.url, "--api-key", API_KEY, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["ok"] is True and verdict["score"] == 55.0 and verdict["reference"] == 56.1
    assert verdict["model"] == "openai/gpt-oss-20b" and verdict["examples"] == 198
    argv = json.loads(fake_gpt_oss.read_text())
    assert argv[argv.index("--base-url") + 1] == server.url + "/v1"
    assert API_KEY not in result.stdout + result.stderr


def test_cli_fails_when_clearly_below(server: FakeServer, fake_gpt_oss: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_GPT_OSS_SCORE", "0.40")
    result = invoke("eval", "--endpoint", server.url, "--api-key", API_KEY, "--reasoning-effort", "low")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "below" in result.stdout


def test_cli_subset_uses_the_driver(server: FakeServer, fake_gpt_oss: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_GPT_OSS_SCORE", "0.8")
    result = invoke(
        "eval", "--endpoint", server.url, "--api-key", API_KEY, "--model", "openai/gpt-oss-120b",
        "--eval", "aime25", "--reasoning-effort", "high", "--examples", "5", "--json",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["examples"] == 5 and verdict["reference"] == 91.7 and verdict["ok"] is True


def test_cli_not_installed_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(evals_lib.PYTHON_ENV, sys.executable)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    result = invoke("eval", "--endpoint", "http://127.0.0.1:9", "--model", "openai/gpt-oss-20b", "--api-key", "k")
    assert result.exit_code == 2
    assert "pip install 'gpt-oss[eval]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # a note and one error line, no traceback

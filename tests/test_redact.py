"""No key or secret in any output: what an endpoint or SkyPilot says is masked in every command's output.

The endpoint here is a real HTTP server on 127.0.0.1 that echoes the Authorization header it got in every
answer (as a careless proxy or debug page does); SkyPilot's side is FakeSky (tests/fakesky.py), whose
log lines and errors carry the deployment's key and a --secret value.
"""

from __future__ import annotations

import pytest
from clitools import FailingEndpoint, invoke
from fakesky import FakeSky
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.errors import LaunchFailedError, SkyError
from launcher.sky import state

KEY = "sk-echoed-6f1d2a9b7c"


@pytest.fixture
def echo():
    with FailingEndpoint(echo_auth=True) as server:
        yield server.url


@pytest.mark.parametrize("command", [
    ["smoke", "--timeout", "5"],
    ["smoke", "--timeout", "5", "--json"],
    ["bench", "--concurrency", "1", "--requests", "1", "--model", "m"],
    ["bench", "--concurrency", "1", "--requests", "1", "--model", "m", "--json"],
    ["eval", "--model", "m", "--examples", "1"],  # 2 before any request: no reference for m
])
def test_an_endpoint_that_echoes_the_key_never_gets_it_printed(echo, command):
    result = invoke(*command, "--endpoint", echo, "--api-key", KEY)
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert KEY not in result.stdout + result.stderr


def _record(name: str) -> str:
    path = state.new_key(name)
    state.save(state.Record(name=name, kind="cluster", model="gpt-oss-20b", served_model="openai/gpt-oss-20b",
                            key_path=str(path), created=state.now(), state="up"))
    return path.read_text().strip()


def test_skypilot_log_lines_and_errors_with_the_key_are_masked(monkeypatch):
    sky = FakeSky().install(monkeypatch)
    key = _record("gptoss-a")
    sky.add_cluster("gptoss-a")
    sky.set_job("gptoss-a", [("RUNNING", [f"INFO api_key={key}\n", "INFO ok\n"])])
    result = invoke("logs", "a")
    assert result.exit_code == 0, result.stderr
    assert key not in result.stdout and "api_key=***" in result.stdout

    def refuse(name, purge=False):
        raise SkyError(f"tearing down {name}: the controller said: env VLLM_API_KEY={key} is invalid")
    monkeypatch.setattr(sky, "down", refuse)
    result = invoke("down", "a", "-y")
    assert result.exit_code == 1 and "VLLM_API_KEY=***" in result.stderr
    assert key not in result.stdout + result.stderr


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_secret_echoed_by_a_failed_launch_is_masked(monkeypatch, json_flag):
    secret = "exa-SECRET-0f9e8d7c"
    monkeypatch.setenv("EXA_API_KEY", secret)
    FakeSky(fail_launch=LaunchFailedError(f"setup failed: EXA_API_KEY={secret} rejected",
                                          log_tail=[f"export EXA_API_KEY={secret}"])).install(monkeypatch)
    result = invoke("up", "20b", "-y", "--no-smoke", "--gpu", "H100", "--secret", "EXA_API_KEY", *json_flag)
    assert result.exit_code == 1, result.stderr
    assert "EXA_API_KEY=***" in result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr


# --- a secret written in pieces ---------------------------------------------------------------------------

SPLIT_KEYS = ("sk-split-0a1b2c3d4e5f", "s3cr3t-value")  # the second begins like the first: 's'


def _through_the_mask(pieces, flush_between):
    import io

    from launcher.cli import redact

    below = io.StringIO()
    stream = redact.MaskedStream(below)
    for piece in pieces:
        stream.write(piece)
        if flush_between:
            stream.flush()
    stream.close()
    return below.getvalue()


def _pieces(text, cuts):
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.fixture
def split_keys():
    from launcher.cli import redact

    saved = set(redact._extra)
    redact._extra.update(SPLIT_KEYS)
    yield
    redact._extra.clear()
    redact._extra.update(saved)


def test_a_key_split_in_two_at_every_position_is_masked(split_keys):
    for key in SPLIT_KEYS:
        text = f"Error: bad request with Bearer {key} (see log)\n"
        start = text.index(key)
        for cut in range(start, start + len(key) + 1):
            for flush_between in (False, True):
                out = _through_the_mask([text[:cut], text[cut:]], flush_between)
                assert out == text.replace(key, "***"), (cut, out)


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.one_of(_TEXT, st.sampled_from(SPLIT_KEYS),
                                st.sampled_from([k[:n] for k in SPLIT_KEYS for n in range(1, len(k))])),
                      max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12), flush_between=st.booleans())
def test_any_chunking_masks_every_key_and_passes_the_rest_in_order(split_keys, words, cuts, flush_between):
    """Keys, pieces of keys and any other text, written in any chunks: no key reaches the stream below,
    and everything else comes through unchanged and in order."""
    text = "".join(words)
    out = _through_the_mask(_pieces(text, cuts), flush_between)
    assert not any(key in out for key in SPLIT_KEYS), out
    assert out == text.replace(SPLIT_KEYS[0], "***").replace(SPLIT_KEYS[1], "***")  # the keys never overlap

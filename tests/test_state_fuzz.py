"""Property-based fuzz of local state (issue 11 item 4): random and corrupt state folders, records (random
JSON, wrong types, truncated, binary, folders) and key files, thrown at every command that reads state,
through the real CLI. Properties: no exception escapes (no traceback), the exit code is 0, 1 or 2, a
failure ends in exactly one `Error:` line, and no key file (or user file) is deleted except by
`down`/`forget` of that deployment's name."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from clitools import invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.errors import NotFoundError
from launcher.sky import state

NAMES = ["gptoss-a", "gptoss-b", "gptoss-svc-c"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _valid(name: str, kind: str) -> dict:
    return {"name": name, "kind": kind, "model": "gpt-oss-20b", "served_model": "openai/gpt-oss-20b",
            "key_path": "", "created": 1.0, "gpus": ["L4:1"],
            "config": {"service": {"replicas": 1}} if kind == "service" else {}, "state": "up",
            "secret_name": "VLLM_API_KEY", "port": 8000, "sky_called": True}


@st.composite
def record_files(draw, name: str):
    """What deployments/NAME.json holds: None (absent), bytes, or "DIR"."""
    kind = draw(st.sampled_from(["absent", "valid", "wrong-types", "random-json", "truncated", "binary",
                                 "folder", "other-name"]))
    base = _valid(name, draw(st.sampled_from(["cluster", "service"])))
    base["sky_called"] = draw(st.booleans())
    base["state"] = draw(st.sampled_from(["up", "launching", "failed", "interrupted"]))
    base["key_path"] = draw(st.sampled_from(["OWN", "OTHER", "USERFILE", "/nonexistent/key", ""]))
    if kind == "absent":
        return None
    if kind == "folder":
        return "DIR"
    if kind == "binary":
        return draw(st.binary(max_size=64))
    if kind == "random-json":
        return json.dumps(draw(json_values)).encode()
    if kind == "other-name":
        base["name"] = "gptoss-zzz"
    if kind == "wrong-types":
        for field in draw(st.lists(st.sampled_from(sorted(base)), min_size=1, max_size=3, unique=True)):
            base[field] = draw(json_values)
    text = json.dumps(base)
    if kind == "truncated":
        return text[:draw(st.integers(0, len(text) - 1))].encode()
    return text.encode()


key_files = st.sampled_from(["absent", "valid", "empty", "binary", "folder", "spaces"])
layouts = st.sampled_from(["normal"] * 6 + ["home-is-file", "deployments-is-file", "keys-is-file",
                                             "keys-readonly", "deployments-readonly", "no-home"])


@st.composite
def worlds(draw):
    return {
        "layout": draw(layouts),
        "records": {n: draw(record_files(n)) for n in NAMES},
        "keys": {n: draw(key_files) for n in NAMES},
        "live": {n: draw(st.sampled_from([None, "mine", "theirs", "unknown"])) for n in NAMES},
        "me": draw(st.sampled_from([None, "bob"])),
        "fail_down": draw(st.sets(st.sampled_from(NAMES))),
    }


class FuzzSky:
    """The seam as the real API server answers it; nothing here reaches a cloud."""

    def __init__(self, world):
        self.me = world["me"]
        self.fail = world["fail_down"]
        self.live = {}
        for n, who in world["live"].items():
            if who is not None:
                item = {"name": n, "status": "UP" if "svc" not in n else "READY"}
                if who != "unknown":
                    item["owner"] = "bob" if who == "mine" else "alice"
                self.live[n] = item

    def current_user(self):
        return self.me

    def clusters(self, names=None):
        return [dict(v) for n, v in self.live.items() if "svc" not in n and (not names or n in names)]

    def services(self, names=None):
        return [dict(v) for n, v in self.live.items() if "svc" in n and (not names or n in names)]

    def _down(self, name):
        from launcher.errors import SkyError

        if name in self.fail:
            raise SkyError(f"tearing down {name}: cloud API error")
        if self.live.pop(name, None) is None:
            raise NotFoundError(f"{name} does not exist")

    def down(self, name, purge=False):
        self._down(name)

    def serve_down(self, name, purge=False):
        self._down(name)

    def endpoint(self, name, port):
        raise NotFoundError(f"cluster {name} does not exist")

    def serve_update(self, config, name, *, secrets, envs):
        pass

    def tail_logs(self, name, job_id=None, *, follow=True, tail=0):
        raise NotFoundError(f"cluster {name} does not exist")

    def serve_logs(self, name, replica_id, *, follow=True, tail=0):
        raise NotFoundError(f"service {name} does not exist")


def build(root: Path, world) -> Path:
    """Lay the world out under root; return GPTOSS_SKY_HOME."""
    home = root / "gptoss-sky"
    layout = world["layout"]
    userfile = root / "user-file.txt"
    userfile.write_text("the user's own file\n")
    if layout == "no-home":
        return home
    if layout == "home-is-file":
        home.write_text("x")
        return home
    home.mkdir()
    for folder in ("deployments", "keys"):
        if layout == f"{folder}-is-file":
            (home / folder).write_text("x")
        elif layout == f"{folder}-readonly":
            (home / folder).symlink_to("/sys")  # the kernel refuses writes there, even to root
        else:
            (home / folder).mkdir()
    for name in NAMES:
        key = home / "keys" / f"{name}.key"
        content = world["records"][name]
        if (home / "deployments").is_dir() and not (home / "deployments").is_symlink() and content is not None:
            path = home / "deployments" / f"{name}.json"
            if content == "DIR":
                path.mkdir()
            else:
                text = content.replace(b'"OWN"', json.dumps(str(key)).encode())
                text = text.replace(b'"OTHER"', json.dumps(str(home / "keys" / "gptoss-a.key")).encode())
                text = text.replace(b'"USERFILE"', json.dumps(str(userfile)).encode())
                path.write_bytes(text)
        if (home / "keys").is_dir() and not (home / "keys").is_symlink():
            kind = world["keys"][name]
            if kind == "valid":
                key.write_text("k" * 43 + "\n")
            elif kind == "empty":
                key.write_text("")
            elif kind == "binary":
                key.write_bytes(b"\xff\x00\xfe")
            elif kind == "spaces":
                key.write_text("two words\n")
            elif kind == "folder":
                key.mkdir()
            if key.exists():
                with contextlib.suppress(OSError):
                    key.chmod(0o600)
    return home


def snapshot(root: Path) -> dict[str, bytes]:
    """Every plain file under root (keys, records, the user's file), with its bytes."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink() and f != ".lock" and not f.startswith(".tmp-"):
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


COMMANDS = [
    ["status"], ["status", "--json"], ["status", "a"], ["status", "svc-c", "--json"],
    ["endpoint", "a"], ["endpoint", "svc-c"],
    ["scale", "svc-c", "--replicas", "2"], ["scale", "a", "--replicas", "2"],
    ["smoke", "a", "--timeout", "1"], ["smoke", "svc-c", "--timeout", "1"],
    ["bench", "b"], ["bench", "svc-c"], ["logs", "a"], ["logs", "svc-c"],
    ["forget", "b", "-y"], ["down", "a", "-y"], ["down", "svc-c", "-y", "--purge"],
    ["down", "--all", "-y", "--json"], ["down", "--all", "-y"],
]


def _allowed_deletions(args, before_records: set[str], world) -> set[str]:
    """Key names this command may delete: its own name for down/forget NAME; for --all, those that had a
    record file, or are live and certainly this user's."""
    if args[0] not in ("down", "forget"):
        return set()
    if "--all" in args:
        mine = {n for n, who in world["live"].items() if who == "mine" and world["me"] == "bob"}
        return before_records | mine
    return {state.validate_name(args[1])}


def check(args, world):
    from launcher.sky import skyapi

    with tempfile.TemporaryDirectory(prefix="gptoss-fuzz-") as tmp:
        root = Path(tmp)
        home = build(root, world)
        fake = FuzzSky(world)
        old_env, old_client = os.environ.get("GPTOSS_SKY_HOME"), skyapi.SkyPilotClient
        os.environ["GPTOSS_SKY_HOME"] = str(home)
        skyapi.SkyPilotClient = lambda: fake
        try:
            before = snapshot(root)
            records_before = {Path(p).stem for p in before if p.startswith("gptoss-sky/deployments/")}
            if (home / "deployments").is_dir():
                records_before |= {p.stem for p in (home / "deployments").glob("*.json")}
            result = invoke(*args)
            after = snapshot(root)
        finally:
            skyapi.SkyPilotClient = old_client
            if old_env is None:
                os.environ.pop("GPTOSS_SKY_HOME", None)
            else:
                os.environ["GPTOSS_SKY_HOME"] = old_env
    where = f"{args} in {world}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (where, result.exc_info)
    assert result.exit_code in (0, 1, 2), (where, result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, where
    if result.exit_code != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], (where, result.stderr)
        if args[0] != "down":  # down reports each item before its one error line
            assert len(result.stderr.strip().splitlines()) == 1, (where, result.stderr)
    if "--json" in args and result.exit_code == 0:
        json.loads(result.stdout)
    assert after.get("user-file.txt") == before["user-file.txt"], where
    allowed = _allowed_deletions(args, records_before, world)
    for path in before:
        if path.startswith("gptoss-sky/keys/"):
            name = Path(path).name.removesuffix(".key")
            if path not in after:
                assert name in allowed, (where, f"deleted {path}")
            else:
                assert after[path] == before[path], (where, f"changed {path}")


@settings(max_examples=int(os.environ.get("GPTOSS_FUZZ_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(world=worlds())
def test_every_state_reading_command_survives_corrupt_state(world):
    for args in COMMANDS:
        check(args, world)


@settings(max_examples=int(os.environ.get("GPTOSS_FUZZ_EXAMPLES_DRYRUN", "6")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(world=worlds())
def test_up_and_serve_name_checks_survive_corrupt_state(seeded, world):
    for args in (["up", "20b", "--name", "a", "--dryrun", "-y"],
                 ["serve", "20b", "--name", "svc-c", "--dryrun", "-y", "--json"]):
        check(args, world)


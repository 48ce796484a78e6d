"""Local records and keys (issue 11 items 1, 2, 4, 7; issue 10 items 3 and 7): only a confirmed `down`
or `forget` deletes them, teardown is idempotent and complete, state faults are one line, Ctrl-C leaves
a record `down` removes, and two `up` of one name cannot both launch. SkyPilot is FakeSky at the seam,
answering like the real API server does for names it does not have (NotFoundError, tests/test_sky_contract.py)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from clitools import invoke
from fakesky import FakeSky
from seeds import l4_deployment

from launcher import lifecycle
from launcher.errors import InterruptedLaunch, SkyError, StateError, UserError
from launcher.plan import catalog
from launcher.sky import state


@pytest.fixture
def sky(monkeypatch):
    return FakeSky().install(monkeypatch)


def record(name, kind="cluster", **extra) -> state.Record:
    """A record and its key as `up` leaves them."""
    key = state.new_key(name)
    r = state.Record(name=name, kind=kind, model="gpt-oss-20b", served_model="openai/gpt-oss-20b",
                     key_path=str(key), created=state.now() - 3600, **extra)
    state.save(r)
    return r


def files() -> set[str]:
    root = state.home()
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


# --- item 1: status never deletes ----------------------------------------------------------------------

def test_status_shows_a_deployment_skypilot_does_not_list_as_not_found_and_keeps_record_and_key(sky):
    record("gptoss-away")
    before = files()
    result = invoke("status")
    assert result.exit_code == 0, result.stderr
    assert "not found" in result.stdout
    assert "gptoss-sky down gptoss-away" in result.stderr and "sky api info" in result.stderr
    doc = json.loads(invoke("status", "--json").stdout)
    assert doc[0]["state"] == "not found" and "sky api info" in doc[0]["note"]
    assert files() == before  # record and key still there


# --- item 2: teardown idempotent and complete -----------------------------------------------------------

def test_down_of_a_cluster_that_is_already_gone_removes_the_record_and_says_so(sky):
    record("gptoss-gone")
    result = invoke("down", "gone", "-y")
    assert result.exit_code == 0, result.stderr
    assert "gptoss-gone" in result.stdout and "already gone" in result.stdout
    assert files() == set()
    again = invoke("down", "gone", "-y")  # nothing left: an unknown name, bad input
    assert again.exit_code == 2 and "no gptoss-sky deployment named 'gptoss-gone'" in again.stderr


def test_a_launch_that_failed_before_any_cluster_existed_can_be_downed_and_the_name_reused(sky, openai_ok):
    class NoCapacity(FakeSky):
        def launch(self, config, cluster_name, **kw):
            raise SkyError(f"launching {cluster_name}: no capacity anywhere")  # nothing was created

    cat = catalog.load()
    failing = NoCapacity(openai_ok)
    deployment = l4_deployment(cat, "gptoss-retry")
    with pytest.raises(SkyError, match="gptoss-sky down gptoss-retry"):
        lifecycle.launch(cat, failing, cat.model("20b"), deployment, progress=lambda m: None)
    with pytest.raises(UserError, match="already exists"):  # the name is taken until `down`
        lifecycle.launch(cat, FakeSky(openai_ok), cat.model("20b"), deployment, progress=lambda m: None)
    result = invoke("down", "retry", "-y")
    assert result.exit_code == 0, result.stderr
    assert ("down", "gptoss-retry") in sky.calls and "already gone" in result.stdout
    out = lifecycle.launch(cat, FakeSky(openai_ok), cat.model("20b"), deployment, progress=lambda m: None,
                           ready_timeout=10)
    assert out["name"] == "gptoss-retry" and state.load("gptoss-retry").state == "up"


def test_down_all_tries_everything_reports_each_and_exits_1_only_for_what_stayed_live(sky):
    record("gptoss-a-stale")  # sorts first; SkyPilot errors on it
    record("gptoss-b-gone")  # SkyPilot has no such cluster
    record("gptoss-c-live")
    record("gptoss-d-svc", kind="service")
    sky.add_cluster("gptoss-a-stale")
    sky.add_cluster("gptoss-c-live")
    sky.add_service("gptoss-d-svc")
    sky.fail_down = {"gptoss-a-stale"}
    result = invoke("down", "--all", "-y", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert sorted(doc["removed"]) == ["gptoss-b-gone", "gptoss-c-live", "gptoss-d-svc"]
    assert [r["name"] for r in doc["results"] if not r["removed"]] == ["gptoss-a-stale"]
    assert "gptoss-a-stale" in result.stderr and "cloud API error" in result.stderr
    assert "gptoss-c-live" not in sky.raw_clusters and "gptoss-d-svc" not in sky.raw_services
    assert files() == {"deployments/gptoss-a-stale.json", "keys/gptoss-a-stale.key"}  # kept: it may bill
    purge = invoke("down", "a-stale", "-y", "--purge")
    assert purge.exit_code == 0, purge.stderr
    assert "--purge" in purge.stdout and files() == set()


def test_fresh_machine_status_and_down_all_succeed_with_valid_json(sky):
    status = invoke("status", "--json")
    assert status.exit_code == 0 and json.loads(status.stdout) == []
    down = invoke("down", "--all", "-y", "--json")
    assert down.exit_code == 0, down.stderr
    assert json.loads(down.stdout)["removed"] == []


def test_down_deletes_only_the_deployments_own_key_never_the_path_a_record_names(sky):
    other = record("gptoss-other")
    victim = state.Record(name="gptoss-evil", kind="cluster", model="m", served_model="m",
                          key_path=other.key_path, created=1.0)  # a damaged record naming another key
    state.save(victim)
    user_file = state.home().parent / "precious.txt"
    user_file.write_text("mine")
    assert invoke("down", "evil", "-y").exit_code == 0
    assert Path(other.key_path).is_file() and user_file.read_text() == "mine"
    assert files() == {"deployments/gptoss-other.json", "keys/gptoss-other.key"}


def test_forget_removes_record_and_key_without_asking_skypilot(sky):
    record("gptoss-elsewhere", kind="service")
    result = invoke("forget", "elsewhere", "-y")
    assert result.exit_code == 0, result.stderr
    assert files() == set() and sky.calls == []
    unknown = invoke("forget", "elsewhere", "-y")
    assert unknown.exit_code == 2 and "nothing was touched" in unknown.stderr
    record("gptoss-keepme")
    refused = invoke("forget", "keepme")  # no -y and no terminal answer: nothing deleted
    assert refused.exit_code == 130 and "gptoss-keepme.json" in str(files())  # an empty answer is no


def test_up_never_replaces_a_key_file_that_has_no_record(sky, openai_ok):
    cat = catalog.load()
    state.home().joinpath("keys").mkdir(parents=True)
    orphan = state.key_path("gptoss-old")
    orphan.write_text("the key a running deployment still uses\n")
    with pytest.raises(UserError, match="forget gptoss-old"):
        lifecycle.launch(cat, FakeSky(openai_ok), cat.model("20b"), l4_deployment(cat, "gptoss-old"),
                         progress=lambda m: None)
    assert orphan.read_text() == "the key a running deployment still uses\n" and files() == {"keys/gptoss-old.key"}
    assert invoke("forget", "old", "-y").exit_code == 0 and files() == set()
    lifecycle.launch(cat, FakeSky(openai_ok), cat.model("20b"), l4_deployment(cat, "gptoss-old"),
                     progress=lambda m: None, ready_timeout=10)
    assert state.load("gptoss-old").state == "up"


# --- issue 10 item 7: a shared API server ----------------------------------------------------------------

BOB = {"user_hash": "b0b0b0b0", "user_name": "bob"}
ALICE = {"user_hash": "a11ce000", "user_name": "alice"}


def test_someone_elses_service_is_shown_as_theirs_and_never_torn_down(sky):
    sky.me = BOB
    sky.add_service("gptoss-svc-20b", **ALICE)
    sky.add_cluster("gptoss-mine")  # bob's
    rows = {r["name"]: r for r in json.loads(invoke("status", "--json").stdout)}
    assert "owned by alice" in rows["gptoss-svc-20b"]["state"] and rows["gptoss-svc-20b"]["owner"] == "alice"
    down_all = invoke("down", "--all", "-y", "--json")
    assert down_all.exit_code == 0, down_all.stderr
    doc = json.loads(down_all.stdout)
    assert doc["removed"] == [] and not any(c[0] in ("down", "serve_down") for c in sky.calls)  # no record: not ours
    assert [u["name"] for u in doc["unrecorded"]] == ["gptoss-mine", "gptoss-svc-20b"]
    assert "`gptoss-sky down gptoss-mine --force` tears it down" in down_all.stderr
    named = invoke("down", "svc-20b", "-y", "--force")
    assert named.exit_code == 2 and "belongs to alice" in named.stderr
    assert ("serve_down", "gptoss-svc-20b") not in sky.calls
    forced = invoke("down", "mine", "-y", "--force")  # bob's own, its record lost: by name, on purpose
    assert forced.exit_code == 0, forced.stderr
    assert ("down", "gptoss-mine") in sky.calls and "gptoss-svc-20b" in sky.raw_services


def test_ownership_follows_skypilots_user_hash_when_both_sides_carry_one(sky):
    sky.me = {"user_hash": "b0b0b0b0", "user_name": "ubuntu"}
    sky.add_service("gptoss-svc-x", user_hash="a11ce000", user_name="ubuntu")  # same name, other user
    sky.add_cluster("gptoss-y", user_hash="b0b0b0b0", user_name="ubuntu")
    refused = invoke("down", "svc-x", "-y", "--force")
    assert refused.exit_code == 2 and "belongs to ubuntu (SkyPilot user a11ce000)" in refused.stderr, refused.stderr
    result = invoke("down", "y", "-y", "--force")
    assert result.exit_code == 0, result.stderr
    assert ("down", "gptoss-y") in sky.calls and "gptoss-svc-x" in sky.raw_services


def test_a_stale_record_whose_name_another_user_now_runs_is_cleaned_without_touching_theirs(sky):
    sky.me = BOB
    record("gptoss-svc-20b", kind="service")  # bob's, long gone
    sky.add_service("gptoss-svc-20b", **ALICE)
    row = json.loads(invoke("status", "--json").stdout)[0]
    assert row["state"] == "not found" and "alice" in row["note"]
    result = invoke("down", "--all", "-y")
    assert result.exit_code == 0, result.stderr
    assert not any(c[0] == "serve_down" for c in sky.calls) and "gptoss-svc-20b" in sky.raw_services
    assert files() == set()


# --- item 7: interrupts and concurrent launches -------------------------------------------------------------

class Interrupting(FakeSky):
    """Ctrl-C once, at a chosen phase: 'before' (in the progress message before the launch call), 'launch'
    (inside the launch call, after SkyPilot took the request), 'wait' (while waiting for the endpoint)."""

    def __init__(self, phase, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.phase = phase

    def _interrupt_at(self, phase):
        if self.phase == phase:
            self.phase = None  # the user pressed it once: later calls (status, down) answer
            raise KeyboardInterrupt

    def progress(self, message):
        self._interrupt_at("before")

    def launch(self, config, cluster_name, **kw):
        job_id = super().launch(config, cluster_name, **kw)  # SkyPilot took the request: the cluster exists
        self._interrupt_at("launch")
        return job_id

    def endpoint(self, name, port):
        self._interrupt_at("wait")
        return super().endpoint(name, port)


@pytest.mark.parametrize("phase, may_exist", [("before", False), ("launch", True), ("wait", True)])
def test_ctrl_c_at_each_phase_leaves_a_record_that_says_what_may_exist_and_down_removes_it(
        sky, openai_ok, phase, may_exist, monkeypatch):
    from launcher.sky import skyapi

    cat = catalog.load()
    fake = Interrupting(phase, openai_ok)
    monkeypatch.setattr(skyapi, "SkyPilotClient", lambda: fake)
    with pytest.raises(InterruptedLaunch, match="interrupted") as info:
        lifecycle.launch(cat, fake, cat.model("20b"), l4_deployment(cat, "gptoss-cc"), progress=fake.progress)
    assert "gptoss-sky down gptoss-cc" in str(info.value)
    assert ("may still exist" in str(info.value)) == may_exist
    saved = state.load("gptoss-cc")
    assert saved.state == "interrupted" and saved.sky_called == may_exist
    row = json.loads(invoke("status", "--json").stdout)[0]
    assert row["name"] == "gptoss-cc" and (row["state"] == "interrupted (nothing launched)") == (not may_exist)
    result = invoke("down", "cc", "-y")
    assert result.exit_code == 0, result.stderr
    assert files() == set() and fake.clusters(["gptoss-cc"]) == []
    assert any(c == ("down", "gptoss-cc") for c in fake.calls) == may_exist  # nothing to ask SkyPilot


def test_two_ups_of_one_name_at_once_cannot_both_launch(openai_ok):
    cat = catalog.load()
    both_checked = threading.Barrier(2, timeout=10)

    class Racing(FakeSky):
        def clusters(self, names=None):  # both pass the "is the name free?" check before either claims
            both_checked.wait()
            return super().clusters(names)

    fakes = [Racing(openai_ok), Racing(openai_ok)]
    outcomes: list = [None, None]

    def up(i):
        try:
            outcomes[i] = lifecycle.launch(cat, fakes[i], cat.model("20b"), l4_deployment(cat, "gptoss-race"),
                                           progress=lambda m: None, ready_timeout=10)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcomes[i] = exc

    threads = [threading.Thread(target=up, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    launched = [f for f in fakes if any(c[0] == "launch" for c in f.calls)]
    assert len(launched) == 1
    loser = next(o for o in outcomes if isinstance(o, Exception))
    assert isinstance(loser, UserError) and "already exists" in str(loser)
    assert state.load("gptoss-race").state == "up" and Path(state.key_path("gptoss-race")).is_file()


def _claim_in_a_process(home, start_at):
    import time

    os.environ["GPTOSS_SKY_HOME"] = home
    while time.time() < start_at:
        pass
    try:
        state.claim(state.Record(name="gptoss-proc", kind="cluster", model="m", served_model="m",
                                 key_path="", created=state.now(), sky_called=False))
        return "claimed"
    except UserError:
        return "refused"


def test_only_one_of_several_processes_claims_a_name():
    import multiprocessing
    import time

    with multiprocessing.get_context("fork").Pool(4) as pool:
        start_at = time.time() + 1.0
        outcomes = pool.starmap(_claim_in_a_process, [(str(state.home()), start_at)] * 4)
    assert sorted(outcomes) == ["claimed", "refused", "refused", "refused"]
    assert state.load("gptoss-proc").sky_called is False


# --- item 4: state faults are one line, never a traceback ------------------------------------------------

def _one_line_error(result, code=(2,)):
    assert result.exit_code in code, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.stderr, lines


def test_a_record_holding_a_json_list_is_reported_not_a_traceback(sky):
    record("gptoss-ok")
    state.record_path("gptoss-list").write_text("[1, 2]")
    rows = json.loads(invoke("status", "--json").stdout)
    assert {r["name"]: r["state"] for r in rows}["gptoss-list"] == "unreadable record"
    _one_line_error(invoke("endpoint", "list"))
    _one_line_error(invoke("scale", "list", "--replicas", "2"))
    _one_line_error(invoke("smoke", "list"))
    result = invoke("down", "list", "-y")  # a corrupt record still goes with `down`
    assert result.exit_code == 0, result.stderr
    assert files() == {"deployments/gptoss-ok.json", "keys/gptoss-ok.key"}


def test_deployments_being_a_file_is_one_line(sky):
    state.home().mkdir(parents=True)
    (state.home() / "deployments").write_text("oops")
    for args in (["status", "gptoss-x"], ["endpoint", "x"], ["down", "x", "-y"], ["forget", "x", "-y"]):
        result = invoke(*args)
        assert result.exit_code in (1, 2) and "Traceback" not in result.stderr, args
    _one_line_error(invoke("endpoint", "x"))


def test_gptoss_sky_home_that_is_a_file_or_unwritable_is_one_line(sky, tmp_path, monkeypatch, openai_ok):
    cat = catalog.load()
    for home in (tmp_path / "afile", Path("/sys/gptoss-sky-home")):
        (tmp_path / "afile").write_text("x")
        monkeypatch.setenv("GPTOSS_SKY_HOME", str(home))
        if home.name == "afile":
            _one_line_error(invoke("status"))  # said, not shown as "no deployments"
        else:
            assert invoke("status").exit_code == 0  # nothing there yet: no deployments
        _one_line_error(invoke("endpoint", "x"), code=(1, 2))  # a state fault, or no such deployment
        with pytest.raises(StateError, match="GPTOSS_SKY_HOME"):
            lifecycle.launch(cat, FakeSky(openai_ok), cat.model("20b"), l4_deployment(cat, "gptoss-h"),
                             progress=lambda m: None)


@pytest.mark.parametrize("folder", ["keys", "deployments"])
def test_unwritable_keys_or_deployments_fail_in_one_line_and_leave_no_orphan(sky, openai_ok, folder):
    cat = catalog.load()
    state.home().mkdir(parents=True)
    (state.home() / folder).symlink_to("/sys")  # the kernel refuses new files there, even to root
    fake = FakeSky(openai_ok)
    with pytest.raises(StateError, match="cannot write .*GPTOSS_SKY_HOME"):
        lifecycle.launch(cat, fake, cat.model("20b"), l4_deployment(cat, "gptoss-ro"), progress=lambda m: None)
    assert fake.calls == []
    assert files() == set()  # no orphan key, no half record


def test_a_missing_or_broken_key_file_is_one_line_for_bench_smoke_scale(sky):
    r = record("gptoss-nokey", kind="service", config={"service": {"replicas": 1}})
    sky.add_service("gptoss-nokey")
    os.unlink(r.key_path)
    for args in (["bench", "nokey"], ["smoke", "nokey"], ["scale", "nokey", "--replicas", "2"]):
        result = invoke(*args)
        _one_line_error(result)
        assert "API key of gptoss-nokey is missing" in result.stderr
    os.mkdir(r.key_path)  # a key path that is a folder
    _one_line_error(invoke("smoke", "nokey"))


# --- issue 21 item 6: state only acts on what it owns -----------------------------------------------------

def test_down_touches_only_recorded_deployments_and_names_how_to_force_the_others(sky):
    record("gptoss-recorded")
    sky.add_cluster("gptoss-recorded")
    sky.add_cluster("gptoss-stray")  # no record here (this user's, launched from another machine)
    down_all = invoke("down", "--all", "-y", "--json")
    assert down_all.exit_code == 0, down_all.stderr
    doc = json.loads(down_all.stdout)
    assert doc["removed"] == ["gptoss-recorded"] and doc["unrecorded"] == [
        {"name": "gptoss-stray", "kind": "cluster", "owner": "me"}]
    assert "gptoss-stray" in sky.raw_clusters and ("down", "gptoss-stray") not in sky.calls
    named = invoke("down", "stray", "-y")
    assert named.exit_code == 2 and "no gptoss-sky record" in named.stderr and "--force" in named.stderr
    assert "gptoss-stray" in sky.raw_clusters
    assert invoke("down", "--all", "--force", "-y").exit_code == 2
    forced = invoke("down", "stray", "-y", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "gptoss-stray" not in sky.raw_clusters


@pytest.mark.parametrize("damage", ["folder", "bad json", "wrong types"])
def test_a_broken_record_is_named_by_status_and_cleared_by_down(sky, damage):
    record("gptoss-fine")
    path = state.record_path("gptoss-broken")
    if damage == "folder":
        path.mkdir()
    elif damage == "bad json":
        path.write_text("{not json")
    else:
        path.write_text('{"name": 5, "kind": []}')
    rows = {r["name"]: r for r in json.loads(invoke("status", "--json").stdout)}
    assert rows["gptoss-broken"]["state"] == "unreadable record"
    note = rows["gptoss-broken"]["note"]
    assert str(path) in note and "gptoss-sky down gptoss-broken" in note
    result = invoke("down", "broken", "-y")
    assert result.exit_code == 0, result.stderr
    assert not os.path.lexists(path) and state.exists("gptoss-fine")
    assert invoke("status", "gptoss-broken").exit_code == 2  # gone: an unknown name now


def test_a_record_folder_with_files_in_it_is_named_and_left_in_place(sky):
    path = state.record_path("gptoss-full")
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("not gptoss-sky's")
    result = invoke("down", "full", "-y")
    assert result.exit_code == 1 and str(path) in result.stderr and "folder with files" in result.stderr
    assert (path / "notes.txt").read_text() == "not gptoss-sky's"

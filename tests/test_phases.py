"""launcher.phases: the node's phase markers (docs/node-protocol.md) and the timeline built from them."""

from __future__ import annotations

import pytest

from launcher import phases


@pytest.mark.parametrize("line, expected", [
    ("gptoss-sky phase install 1700000000", phases.Marker("install", 1700000000)),
    ("gptoss-sky phase download 1700000012\n", phases.Marker("download", 1700000012)),
    ("gptoss-sky phase engine_exit 1700000300 137", phases.Marker("engine_exit", 1700000300, 137)),
    ("gptoss-sky phase engine_exit 1700000300", phases.Marker("engine_exit", 1700000300, None)),
    # SkyPilot's prefixes, with its colour codes
    ("(setup pid=2171) gptoss-sky phase install 1700000000", phases.Marker("install", 1700000000)),
    ("\x1b[36m(task, pid=3312)\x1b[0m gptoss-sky phase ready 1700000400", phases.Marker("ready", 1700000400)),
    ("(head, rank=0, pid=3312) gptoss-sky phase graphs 1700000390", phases.Marker("graphs", 1700000390)),
])
def test_markers_are_parsed_with_or_without_skypilot_prefixes(line, expected):
    assert phases.parse_marker(line) == expected


@pytest.mark.parametrize("line", [
    "INFO 11-30 loading weights took 12.3 s",
    "gptoss-sky phase nonsense 1700000000",  # unknown name
    "gptoss-sky phase install soon",  # no epoch
    "gptoss-sky phase install 1700000000 trailing words",
    "echo gptoss-sky phase install $(date +%s)",  # a traced command, not its output
    "xgptoss-sky phase install 1700000000",
])
def test_other_lines_are_not_markers(line):
    assert phases.parse_marker(line) is None


def test_timeline_orders_phases_and_each_ends_when_the_next_begins():
    t = phases.Timeline()
    t.begin("provision", 100.0)
    for line in ["(setup pid=1) gptoss-sky phase install 160", "some pip output",
                 "(setup pid=1) gptoss-sky phase download 220", "(setup pid=1) gptoss-sky phase setup_done 520",
                 "(task, pid=2) gptoss-sky phase engine_start 521", "(task, pid=2) gptoss-sky phase load 530",
                 "(task, pid=2) gptoss-sky phase compile 600", "(task, pid=2) gptoss-sky phase graphs 640",
                 "(task, pid=2) gptoss-sky phase ready 660"]:
        t.feed(line)
    t.finish(700.0)
    got = [(p["name"], p["start"], p["end"], p["seconds"]) for p in t.to_list()]
    assert got == [("provision", 100, 160, 60), ("install", 160, 220, 60), ("download", 220, 520, 300),
                   ("start", 520, 530, 10), ("load", 530, 600, 70), ("compile", 600, 640, 40),
                   ("graphs", 640, 660, 20), ("answering", 660, 700, 40)]
    assert phases.summary(t.to_list()).startswith("provisioning 1m00s, installing the engine 1m00s, "
                                                  "downloading weights 5m00s")


def test_repeated_markers_do_not_restart_a_phase_and_engine_exit_keeps_its_code():
    t = phases.Timeline()
    t.feed("gptoss-sky phase install 10")
    t.feed("gptoss-sky phase install 50")
    t.feed("gptoss-sky phase engine_exit 60 1")
    assert [(p.name, p.start) for p in t.phases] == [("install", 10)]
    assert t.engine_exited and t.exit_code == 1


def test_a_node_clock_behind_ours_never_gives_negative_time():
    t = phases.Timeline()
    t.begin("provision", 1000.0)
    t.feed("gptoss-sky phase install 990")
    t.finish(1005.0)
    assert [p["seconds"] for p in t.to_list()] == [0, 5]


def test_an_open_phase_reports_time_so_far():
    t = phases.Timeline()
    t.begin("download", 100.0)
    assert t.to_list(now=130.0)[0] == {"name": "download", "label": "downloading weights", "start": 100.0,
                                       "end": None, "seconds": 30.0}


@pytest.mark.parametrize("seconds, text", [(None, "-"), (5.4, "5s"), (65, "1m05s"), (3725, "1h02m")])
def test_duration(seconds, text):
    assert phases.duration(seconds) == text

"""Where a launch spends its time: phase markers from the node's log, and the timeline they build.

The node prints `gptoss-sky phase <name> <epoch> [<code>]` (docs/node-protocol.md); SkyPilot may put a
`(setup pid=N)` / `(task, pid=N)` prefix and colour codes in front. The launcher adds the phases only it
sees (provisioning, the endpoint answering from outside, smoke). Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MARKER = re.compile(r"(?:^|[\s)\]])gptoss-sky phase ([a-z_]+) (\d+(?:\.\d+)?)(?: (-?\d+))?\s*$")

# Display phases in launch order: (name, what the user reads).
PHASES: tuple[tuple[str, str], ...] = (
    ("controller", "starting the service controller"),
    ("provision", "provisioning"),
    ("replicas", "replicas starting"),
    ("install", "installing the engine"),
    ("download", "downloading weights"),
    ("start", "starting the engine"),
    ("load", "loading weights"),
    ("compile", "compiling"),
    ("warmup", "warming up (profiling run, JIT kernels)"),
    ("graphs", "capturing CUDA graphs"),
    ("answering", "answering"),
    ("smoke", "smoke test"),
)
LABELS = dict(PHASES)

# Node marker -> the display phase it begins (setup_done and engine_start both begin "start").
MARKER_PHASE = {"install": "install", "download": "download", "setup_done": "start", "engine_start": "start",
                "load": "load", "compile": "compile", "warmup": "warmup", "graphs": "graphs",
                "ready": "answering"}
MARKERS = frozenset(MARKER_PHASE) | {"engine_exit"}


@dataclass(frozen=True)
class Marker:
    """One parsed phase line: the marker name, the node's epoch seconds, and engine_exit's code."""

    name: str
    at: float
    code: int | None = None


def clean(line: str) -> str:
    """A log line without colour codes or the trailing newline."""
    return _ANSI.sub("", line).rstrip("\r\n")


def parse_marker(line: str) -> Marker | None:
    """The phase marker on this log line, or None (unknown names are not markers)."""
    match = _MARKER.search(clean(line))
    if not match or match.group(1) not in MARKERS:
        return None
    name, at, code = match.group(1), float(match.group(2)), match.group(3)
    if name == "engine_exit":
        return Marker(name, at, int(code) if code is not None else None)
    return Marker(name, at)


# What the run script prints when the engine died while its API server lived (the engine's own log line
# follows); the launcher adds that line to a failed launch's cause.
ENGINE_FAILED = "gptoss-sky: engine failed: "


def engine_failure(lines: list[str]) -> str | None:
    """The engine's fatal log line the run script named, from the last such line; None when there is none."""
    for line in reversed(lines):
        at = clean(line).find(ENGINE_FAILED)
        if at >= 0:
            return clean(line)[at + len(ENGINE_FAILED):].strip() or None
    return None


@dataclass
class Phase:
    name: str
    start: float
    end: float | None = None

    def to_dict(self, now: float | None = None, replica: int | None = None) -> dict[str, Any]:
        end = self.end if self.end is not None else now
        out: dict[str, Any] = {"name": self.name, "label": LABELS.get(self.name, self.name),
                               "start": round(self.start, 3),
                               "end": None if self.end is None else round(self.end, 3),
                               "seconds": None if end is None else round(max(0.0, end - self.start), 1)}
        if replica is not None:
            out["replica"] = replica
        return out


@dataclass
class Timeline:
    """Phases in the order they began; each one ends when the next begins (or at `finish`)."""

    phases: list[Phase] = field(default_factory=list)
    exit_code: int | None = None  # from engine_exit
    engine_exited: bool = False

    @property
    def current(self) -> Phase | None:
        return self.phases[-1] if self.phases else None

    def begin(self, name: str, at: float) -> bool:
        """Start phase `name` at `at`; False when it already began (a repeated or late marker)."""
        if any(p.name == name for p in self.phases):
            return False
        if self.phases:
            previous = self.phases[-1]
            at = max(at, previous.start)  # a node clock slightly behind ours never gives negative time
            if previous.end is None:
                previous.end = at
        self.phases.append(Phase(name, at))
        return True

    def feed(self, line: str) -> Marker | None:
        """Apply the marker on `line`, if any; returns it."""
        marker = parse_marker(line)
        if marker is None:
            return None
        if marker.name == "engine_exit":
            self.engine_exited, self.exit_code = True, marker.code
        else:
            self.begin(MARKER_PHASE[marker.name], marker.at)
        return marker

    def finish(self, at: float) -> None:
        if self.phases and self.phases[-1].end is None:
            self.phases[-1].end = max(at, self.phases[-1].start)

    def to_list(self, now: float | None = None, replica: int | None = None) -> list[dict[str, Any]]:
        return [p.to_dict(now, replica) for p in self.phases]


def summary(phases: list[dict[str, Any]]) -> str:
    """'provisioning 2m10s, downloading weights 4m02s, ...' for a one-line answer to "where did it go"."""
    return ", ".join(f"{p['label']} {duration(p['seconds'])}" for p in phases if p.get("seconds") is not None)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"

"""What the user watches while up/serve launch: phases, job or service state, the last log lines."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from launcher import phases as phases_mod
from launcher.cli._common import stderr


class LaunchView:
    """The launch as the user watches it on stderr: a rich Live of phases with elapsed times, the job's
    state and the last log lines; plain lines instead when stderr is not a terminal or with --json."""

    def __init__(self, json_):
        self.live = None
        self.plain = json_ or not stderr.is_terminal
        self.watch = None
        self._shown = {}
        self._status = {}

    def __enter__(self):
        if not self.plain:
            from rich.live import Live

            self.live = Live(self, console=stderr, refresh_per_second=4, redirect_stdout=False,
                             redirect_stderr=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.refresh()
            self.live.__exit__(*exc)
        return False

    def pause(self):
        """Stop redrawing (before a question on the terminal)."""
        if self.live is not None:
            self.live.stop()
            self.live = None

    def progress(self, message):
        if self.live is not None:
            self.live.console.print(f"[dim]{escape(message)}[/]")
        else:
            stderr.print(f"[dim]{escape(message)}[/]")

    def _elapsed(self):
        return phases_mod.duration(self.watch.clock() - self.watch.started) if self.watch else "0s"

    def observe(self, watch, event):
        self.watch = watch
        if self.live is not None:
            return  # the Live re-renders on its own refresh
        if event == "phase":
            self._plain_phases(watch.name, None, watch.timeline)
            for rid, replica in sorted(watch.replicas.items()):
                self._plain_phases(watch.name, rid, replica.timeline)
        elif event == "replica":
            for rid, replica in sorted(watch.replicas.items()):
                if self._status.get(rid) != replica.status:
                    self._status[rid] = replica.status
                    stderr.print(f"[{self._elapsed():>6}] {watch.name} replica {rid}: {replica.status}")
                self._plain_phases(watch.name, rid, replica.timeline)
        elif event == "status" and watch.status:
            what = "service" if watch.kind == "service" else "job"
            stderr.print(f"[{self._elapsed():>6}] {watch.name} {what}: {watch.status}")
        elif event == "note" and watch.note:
            stderr.print(f"[dim][{self._elapsed():>6}] {escape(watch.note)}[/]")

    def _plain_phases(self, name, rid, timeline):
        shown = self._shown.get(rid, 0)
        for phase in timeline.phases[shown:]:
            who = name if rid is None else f"{name} replica {rid}"
            stderr.print(f"[{self._elapsed():>6}] {who}: {phases_mod.LABELS.get(phase.name, phase.name)}")
        self._shown[rid] = len(timeline.phases)

    def __rich__(self):
        from rich.console import Group, RenderableType
        from rich.text import Text

        watch = self.watch
        if watch is None:
            return Text("Starting...", style="dim")
        now = watch.clock()
        table = Table(box=None, show_header=False, padding=(0, 1))
        table.add_column(width=2)
        table.add_column()
        table.add_column(justify="right")
        with watch.lock:
            rows = [(None, p) for p in watch.timeline.phases]
            for rid, replica in sorted(watch.replicas.items()):
                rows += [(rid, p) for p in replica.timeline.phases]
            lines = list(watch.lines)[-5:]
        for rid, phase in rows:
            done = phase.end is not None
            label = phases_mod.LABELS.get(phase.name, phase.name)
            if rid is not None:
                label = f"replica {rid}: {label}"
            seconds = (phase.end if done else now) - phase.start
            table.add_row("[green]✓[/]" if done else "[cyan]…[/]", label if done else f"[bold]{label}[/]",
                          phases_mod.duration(seconds))
        what = "service" if watch.kind == "service" else "job"
        head = Text.assemble((f"{watch.name}", "bold"), f"  {phases_mod.duration(now - watch.started)}",
                             (f"  {what} {watch.status}" if watch.status else "", "dim"),
                             (f"  {watch.note}" if watch.note else "", "dim"))
        parts: list[RenderableType] = [head, table]
        parts += [Text(line[:200], style="dim", overflow="ellipsis", no_wrap=True) for line in lines]
        return Group(*parts)

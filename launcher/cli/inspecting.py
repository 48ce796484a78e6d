"""status, endpoint: what this tool launched, its live state, cost and engine numbers; where it answers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click
from rich.table import Table

from launcher import lifecycle
from launcher.cli._common import json_option, money, print_json, seconds_up_to, stderr, table_console
from launcher.errors import UserError
from launcher.plan import catalog as catalog_mod
from launcher.sky import state

if TYPE_CHECKING:
    from launcher.operate.metrics import Scrape


@click.command("status")
@click.argument("names", nargs=-1)
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", type=float, default=5.0, show_default=True, callback=seconds_up_to(3600),
              help="Seconds between --watch refreshes.")
@click.option("--window", type=float, default=2.0, show_default=True, callback=seconds_up_to(600),
              help="Seconds between the two /metrics reads that tokens/s is measured over.")
@click.option("--no-metrics", is_flag=True, help="Skip reading the engines' /metrics.")
@json_option
def status(names, watch, interval, window, no_metrics, json_):
    """Deployments this tool launched: live state, price, cost so far, and the engine's own numbers
    (generation tokens/s, requests running/waiting, KV-cache use, TTFT/TPOT p50, prefix-cache hits)."""
    from launcher.sky import skyapi

    if watch and json_:
        raise UserError("--watch refreshes a table; it does not combine with --json")
    wanted = [state.validate_name(n) for n in names]
    client = skyapi.SkyPilotClient()

    # --watch: each refresh measures from the previous one's scrape
    memory: dict[str, Scrape] | None = {} if watch else None

    def rows():
        found = lifecycle.status(client, wanted)
        if not no_metrics:
            from launcher.operate import metrics

            metrics.attach(found, list(catalog_mod.load().engines.values()), window_s=window,
                           endpoint_of=lambda name: lifecycle.endpoint(client, name), memory=memory)
        return found

    if json_:
        print_json(rows())
        return 0
    if not watch:
        found = rows()
        if not found:
            stderr.print("No gptoss-sky deployments.")
            return 0
        table_console().print(_status_table(found, not no_metrics))
        for r in found:
            if r.get("note"):
                stderr.print(f"{r['name']}: {r['note']}", markup=False, soft_wrap=True)
        return 0
    from rich.live import Live

    console = table_console()
    with Live(_status_table([], not no_metrics), console=console, auto_refresh=False) as live:
        try:
            while True:
                live.update(_status_table(rows(), not no_metrics), refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
    return 0


def _num(value, fmt="{:,.0f}", scale=1.0):
    return "-" if value is None else fmt.format(value * scale)


def _status_table(rows, with_metrics):
    """The status table; a service's replicas follow it as indented rows with their own numbers."""
    from launcher.sky import skyapi

    table = Table(box=None, header_style="bold")
    columns = ["NAME", "KIND", "MODEL", "STATE", "CLOUD", "REGION", "$/HOUR", "UPTIME", "COST", "REPLICAS",
               "ENDPOINT"]
    if with_metrics:
        columns += ["TOK/S", "RUN", "WAIT", "KV%", "TTFT p50", "TPOT p50", "PREFIX HIT"]
    for col in columns:
        table.add_column(col)

    def engine_cells(numbers):
        if not with_metrics:
            return []
        numbers = numbers or {}
        return [_num(numbers.get("tokens_per_s")), _num(numbers.get("running")), _num(numbers.get("waiting")),
                _num(numbers.get("kv_cache_pct"), "{:.1f}"), _num(numbers.get("ttft_p50_s"), "{:.0f} ms", 1000),
                _num(numbers.get("tpot_p50_s"), "{:.1f} ms", 1000),
                _num(numbers.get("prefix_cache_hit_pct"), "{:.0f}%")]

    for r in rows:
        replicas = r.get("replicas") or []
        ready = sum(1 for x in replicas if x.get("status") == skyapi.status_names().replica_ready)
        table.add_row(r["name"], r.get("kind") or "-", r.get("model") or "-", str(r.get("state")),
                      r.get("cloud") or "-", r.get("region") or "-", money(r.get("price_per_hour")),
                      f"{(r.get('uptime_s') or 0) / 3600:.1f}h", money(r.get("cost_so_far")),
                      f"{ready}/{len(replicas)}" if r.get("kind") == "service" else "-",
                      r.get("endpoint") or "-", *engine_cells(r.get("engine")))
        for x in replicas:
            table.add_row(f"  replica {x.get('id')}", "replica", "", str(x.get("status")), "", "",
                          money(x.get("price_per_hour")), "", "", "", x.get("endpoint") or "-",
                          *engine_cells(x.get("engine")))
    return table


@click.command("endpoint")
@click.argument("name")
def endpoint(name):
    """Print only the endpoint URL of NAME (http://host:port)."""
    from launcher.sky import skyapi

    name = state.validate_name(name)
    click.echo(lifecycle.endpoint(skyapi.SkyPilotClient(), name))
    return 0



COMMANDS = [status, endpoint]

"""plan, up, serve, scale, status, endpoint, down: the deployment commands."""

from __future__ import annotations

import time

import click
import yaml
from rich.markup import escape
from rich.table import Table

from launcher import lifecycle
from launcher import phases as phases_mod
from launcher.cli._common import (
    check_host_port,
    json_option,
    non_negative_int,
    parse_gpu_spec,
    positive_int,
    positive_number,
    print_json,
    stderr,
    stdout,
    table_console,
)
from launcher.errors import GptossSkyError, NoCloudError, SkyError, UserError
from launcher.node import render
from launcher.plan import catalog as catalog_mod
from launcher.plan import offers as plan_mod
from launcher.sky import state


def _tool_server(ctx, param, value):
    """`demo`, or a comma-separated list of HOST:PORT MCP tool servers (port 1-65535)."""
    if value is None or value == "demo":
        return value
    for part in value.split(","):
        try:
            check_host_port(part.strip())
        except ValueError as exc:
            raise click.BadParameter(f"{exc}; use 'demo' or HOST:PORT[,HOST:PORT...]") from None
    return ",".join(p.strip() for p in value.split(","))


def plan_options(func):
    """Options shared by plan, up and serve (llm-style reusable option bundle)."""
    options = [
        click.argument("model"),
        click.option("--gpu", "--gpus", "gpus", multiple=True, metavar="GPU[:N]",
                     help="Only these GPUs (repeatable; --gpus as in SkyPilot)."),
        click.option("--clouds", help="Plan on exactly these clouds/infra, comma-separated (enabled or not)."),
        click.option("--infra", metavar="INFRA",
                     help="Pin one infra: CLOUD[/REGION[/ZONE]], kubernetes[/CONTEXT] or ssh/POOL."),
        click.option("--spot", "--use-spot", "spot", is_flag=True, help="Spot prices and spot instances."),
        click.option("--context", type=int, callback=positive_int, help="max_model_len to serve."),
        click.option("--profile", type=click.Choice(["balanced", "latency", "throughput"]), default="balanced",
                     show_default=True, help="Engine tuning profile."),
        click.option("--optimize", type=click.Choice(plan_mod.OBJECTIVES), default="cost", show_default=True,
                     help="Rank by $/hour (what SkyPilot's optimizer launches) or by $ per 1M output tokens."),
        click.option("--engine", type=click.Choice(["vllm", "sglang"]), default="vllm", show_default=True,
                     help="Serving engine."),
        click.option("--tool-server", metavar="demo|HOST:PORT,...", callback=_tool_server,
                     help="Built-in tools (browser, python) on /v1/responses. The python tool runs model-written "
                          "code: use a sandboxed tool server in production."),
        click.option("--dummy-weights", is_flag=True,
                     help="Random weights of the real shapes (--load-format dummy): probe fit and speed, no download."),
        click.option("--model-source", metavar="REPO[@REVISION]",
                     help="Serve a fine-tune of MODEL from this Hugging Face repo (sized with MODEL's shapes); "
                          "pin a commit with @REVISION."),
        click.option("--engine-version", metavar="VERSION",
                     help="Install this engine release instead of the pinned one; the plan uses its memory rules. "
                          "Releases gptoss-sky has not validated are allowed with a warning."),
        click.option("--engine-arg", "engine_args", multiple=True, metavar="'--FLAG [VALUE]'",
                     help="One more engine flag (repeatable), checked against the engine's own option list; "
                          "flags gptoss-sky sets are refused."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _resolve(model, gpus, clouds, infra, context, engine, tool_server, engine_version=None, engine_args=(),
             model_source=None, quiet=False, spot=False, **_):
    """Every name and option checked before any pricing: (catalog, model, GPU specs, cloud list).

    Bad input fails here in well under a second, as one line naming the option and what is allowed.
    """
    from launcher.plan import engine_control

    catalog, notes = engine_control.apply(catalog_mod.load(), engine, engine_version, engine_args)
    for note in notes if not quiet else ():
        stderr.print(f"[yellow]warning[/]: {note}")
    m = catalog.model(model)
    if model_source:
        m = m.with_source(model_source)
        if not model_source.partition("@")[2] and not quiet:
            stderr.print(f"[yellow]warning[/]: --model-source {model_source} is not pinned: the node downloads "
                         "whatever `main` is then; give REPO@COMMIT to pin it")
    specs = [parse_gpu_spec(catalog, g) for g in gpus]
    if context is not None:
        top = m.architecture.max_position_embeddings
        if not m.min_context <= context <= top:
            raise UserError(f"--context {context} is out of range for {m.name}: allowed {m.min_context}..{top} "
                            "tokens")
    cloud_list = [c.strip() for c in clouds.split(",") if c.strip()] if clouds is not None else None
    names, pin = plan_mod.check_infra(cloud_list, infra)
    chosen = [pin[0]] if pin else names or []
    if spot and chosen and all(c in plan_mod.NO_SPOT for c in chosen):
        raise UserError(f"--spot: {', '.join(chosen)} has no spot instances in SkyPilot; drop --spot or plan on "
                        "a cloud (--clouds/--infra)")
    if tool_server and not catalog.engine(engine).command.get("tool_server_flag"):
        raise UserError(f"--tool-server is not supported by --engine {engine}")
    return catalog, m, specs, cloud_list


def _plan(model, gpus, clouds, infra, spot, context, profile, optimize, engine, tool_server, dummy_weights,
          all_regions=False, engine_version=None, engine_args=(), model_source=None):
    """Resolve names and price the fitting recipes (the part plan, up and serve share)."""
    catalog, m, specs, cloud_list = _resolve(model, gpus, clouds, infra, context, engine, tool_server,
                                             engine_version, engine_args, model_source, spot=spot)
    with stderr.status("Pricing offers with SkyPilot's catalog..."):
        result = plan_mod.build(catalog, m, gpu_specs=specs, clouds=cloud_list, infra=infra, spot=spot,
                                context=context, profile=profile, optimize=optimize, dummy_weights=dummy_weights,
                                engine=engine, tool_server=tool_server, all_regions=all_regions)
    return catalog, m, result


def _money(value, decimals=2):
    """Dollars with a fixed number of decimals (cents for $/hour and costs, 3 for $ per 1M tokens)."""
    return "-" if value is None else f"${value:,.{decimals}f}"


def _print_plan(result, top, console=stderr):
    """The priced table: the result of `plan` (stdout), context for `up`/`serve` (stderr).

    Readable at 80 columns: the instance type column only appears on wider consoles (--json always has
    it), and long region names wrap inside their column instead of being cut.
    """
    for note in result.notes:
        stderr.print(f"[dim]{note}[/]")
    wide = console.width >= 110
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = [("GPU", "left"), ("CLOUD", "left"), ("REGION", "left")] + ([("INSTANCE", "left")] if wide else [])
    columns += [("$/HOUR", "right")] + ([("READY", "right")] if wide else [])
    columns += [("CONC", "right"), ("CTX", "right"), ("TOK/S", "right"), ("$/1M", "right")]
    for col, justify in columns:
        table.add_column(col, justify=justify, overflow="fold", no_wrap=col not in ("REGION", "INSTANCE"))
    for o in result.offers[:top]:
        price = _money(o.price_per_hour) if o.price_per_hour is not None else "unknown"
        cells = [f"{o.gpu}:{o.count}", o.cloud, o.region] + ([o.instance_type] if wide else [])
        cells += [price] + ([f"~{round(o.time_to_ready()['seconds'] / 60)} min"] if wide else [])
        cells += [f"{o.max_concurrency:.1f}x", f"{o.max_model_len // 1024}k",
                  f"{o.est_output_tokens_per_s:,.0f}", _money(o.usd_per_million_output_tokens, 3)]
        table.add_row(*cells)
    console.print(table)
    per = "region" if result.all_regions else "GPU kind, count and cloud at its cheapest region; --all-regions: every region"
    stderr.print(f"[dim]Shown {min(top, len(result.offers))} of {len(result.offers)} offers (one per {per}), "
                 f"ranked by {result.objective}. CONC: concurrent requests at the full context CTX; TOK/S: estimated "
                 "output tokens/s (catalogs/throughput.yaml); $/1M: $ per 1M output tokens; READY (estimated time to "
                 "answering on a fresh node, catalogs/startup.yaml) and instance types: --json or a wider "
                 "terminal.[/]")


@click.command("plan")
@plan_options
@click.option("--top", type=int, default=15, show_default=True, callback=positive_int, help="Rows to show.")
@click.option("--all-regions", is_flag=True, help="One row per region and instance type, not per cloud.")
@json_option
def plan(top, all_regions, json_, **plan_args):
    """Price every GPU offer that fits MODEL, best first."""
    _, _, result = _plan(**plan_args, all_regions=all_regions)
    model = plan_args["model"]
    if not result.offers:  # the same answer, exit 2, with or without --json
        raise UserError(f"no offer for {model} on {', '.join(result.clouds) or 'any cloud'}; "
                        "try other --clouds, --gpu, --spot or a shorter --context")
    if json_:
        print_json([o.to_dict() for o in result.offers[:top]])
        return 0
    _print_plan(result, top, console=table_console(80))
    return 0


def launch_options(func):
    """Options shared by up and serve, after their own."""
    options = [
        click.option("--image", is_flag=True, help="Use the engine's official image instead of installing it."),
        click.option("--cache", metavar="URI",
                     help="Bucket (s3://, gs://, r2://, ...) SkyPilot mounts on every node and replica: weights and "
                          "compiled kernels are read from it when there and written after the first start."),
        click.option("--dryrun", is_flag=True, help="Plan, render and validate; print the YAML; launch nothing."),
        click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation."),
        click.option("--no-smoke", is_flag=True, help="Skip the smoke test once the model answers."),
        click.option("--env", "envs", multiple=True, metavar="K=V",
                     help="Environment variable for the node and engine (repeatable; K alone takes this shell's value)."),
        click.option("--secret", "secrets", multiple=True, metavar="K[=V]",
                     help="Secret for the node, e.g. EXA_API_KEY (repeatable; K alone takes this shell's value). "
                          "Passed as a SkyPilot secret: never in the YAML, argv or --json."),
        json_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _launch_common(kind, plan_args, name, image, dryrun, yes, json_, no_smoke, envs=(), secrets=(), **service):
    from launcher.plan import engine_control

    cache = plan_args.pop("cache", None)
    cache = render.check_cache_uri(cache) if cache is not None else None  # bad input: before pricing

    catalog, m, _, _ = _resolve(**plan_args, quiet=True)
    engine = catalog.engine(plan_args["engine"])
    user_envs = engine_control.parse_envs(envs, engine)
    user_secrets = engine_control.parse_secrets(secrets, engine)
    try:  # before the seconds of pricing
        full_name = state.validate_name(name or f"{kind_prefix(kind)}{m.short}")
    except UserError as exc:
        raise UserError(f"--name: {exc}") from None
    taken = lifecycle.name_taken(full_name)
    if taken and not dryrun:
        raise UserError(taken)
    catalog, m, result = _plan(**plan_args)
    spot, infra, optimize = plan_args["spot"], plan_args["infra"], plan_args["optimize"]
    recipes = lifecycle.choose_recipes(result, top_kinds=3 if optimize == "cost-per-token" else None)
    deployment = lifecycle.deployment_for(full_name, recipes, service=kind == "service", image=image, spot=spot,
                                          infra=infra, cache=cache, **service)
    text = render.render_text(catalog, deployment)
    from launcher.sky import skyapi

    skyapi.task_from_config(yaml.safe_load(text), secrets={recipes[0].engine.api_key_env: "dry-run-placeholder"})
    if not json_:
        _print_plan(result, 8)
        stderr.print(f"[bold]{full_name}[/]: {m.name} on the cheapest available of "
                     f"{', '.join(r.accelerator for r in recipes)} (SkyPilot fails over in price order).")
    if dryrun:
        if taken:
            stderr.print(f"Note: {taken}", markup=False, soft_wrap=True)
        if json_:
            print_json({"name": full_name, "kind": kind, "dryrun": True, "yaml": text,
                        "envs": user_envs, "secrets": sorted(user_secrets),
                        "offers": [o.to_dict() for o in result.offers[:8]]})
        else:
            click.echo(text, nl=False)
            stderr.print("[dim]Dry run: nothing launched. The YAML above is valid SkyPilot input.[/]")
        return 0
    if result.no_cloud_enabled:
        raise NoCloudError("no cloud is enabled in SkyPilot, so nothing can be launched: run `sky check` "
                           "(or try --dryrun)")
    first = result.offers[0].price_per_hour
    cost = f"from {_money(first)}/hour" if first is not None else "price unknown"
    if not yes and not click.confirm(f"Launch {full_name} ({cost})?", err=True):
        raise click.Abort()
    client = skyapi.SkyClient()
    smoke = None if no_smoke else _smoke_runner(json_)
    with LaunchView(json_) as view:
        try:
            outcome = lifecycle.launch(catalog, client, m, deployment, progress=view.progress, smoke=smoke,
                                       observer=view.observe, envs=user_envs, secrets=user_secrets)
        except GptossSkyError as exc:
            if json_ and not isinstance(exc, UserError):  # the launch failed: the one JSON document says
                # what failed, as the error line on stderr does (bad input keeps stdout empty)
                print_json({"name": full_name, "kind": kind, "ok": False, "error": str(exc),
                            "cause": getattr(exc, "cause", str(exc)), "log_tail": getattr(exc, "log_tail", []),
                            "phases": getattr(exc, "phases", None) or _recorded_phases(full_name)})
            raise
    return _report_outcome(outcome, smoke, json_)


def _recorded_phases(name):
    try:
        return state.load(name).phases
    except GptossSkyError:
        return []


def _report_outcome(outcome, smoke, json_):
    """Smoke report check by check, then "Ready" only if smoke passed (or was skipped); exit 1 if not."""
    report = outcome.get("smoke")
    smoke_ok = not isinstance(report, dict) or bool(report.get("ok"))
    outcome["ok"] = smoke_ok
    if json_:
        print_json(outcome)
    else:
        if smoke is not None and getattr(smoke, "report", None) is not None:
            from launcher.cli.verify import print_smoke_report

            print_smoke_report(smoke.report)
        stderr.print(f"[dim]Time: {phases_mod.summary(outcome.get('phases') or [])}[/]")
        if smoke_ok:
            _print_ready(outcome)
    if not smoke_ok:
        name = outcome["name"]
        failed = ", ".join(report.get("failed") or []) or "see the report above"
        stderr.print(f"[red]Smoke test failed[/] ({failed}): {name} is up at {outcome['endpoint']} but does not "
                     f"serve correctly. It stays up and bills: re-check with `gptoss-sky smoke {name}`, "
                     f"remove it with `gptoss-sky down {name}`.")
        return 1
    return 0


def kind_prefix(kind):
    return "" if kind == "cluster" else "svc-"


def _progress(json_):
    def report(message):
        if not json_:
            stderr.print(f"[dim]{message}[/]")
    return report


def _smoke_runner(json_):
    """The smoke test lifecycle runs once the model answers; keeps the report for printing."""
    from launcher.verify import smoke as smoke_mod

    def run(endpoint, key, model):
        report = smoke_mod.smoke(endpoint, key, model)
        run.report = report
        return report.to_dict()
    run.report = None
    return run


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
            self._plain_phases(None, watch.timeline)
            for rid, replica in sorted(watch.replicas.items()):
                self._plain_phases(rid, replica.timeline)
        elif event == "replica":
            for rid, replica in sorted(watch.replicas.items()):
                if self._status.get(rid) != replica.status:
                    self._status[rid] = replica.status
                    stderr.print(f"[{self._elapsed():>6}] {watch.name} replica {rid}: {replica.status}")
                self._plain_phases(rid, replica.timeline)
        elif event == "status" and watch.status:
            what = "service" if watch.kind == "service" else "job"
            stderr.print(f"[{self._elapsed():>6}] {watch.name} {what}: {watch.status}")
        elif event == "note" and watch.note:
            stderr.print(f"[dim][{self._elapsed():>6}] {escape(watch.note)}[/]")

    def _plain_phases(self, rid, timeline):
        shown = self._shown.get(rid, 0)
        for phase in timeline.phases[shown:]:
            who = self.watch.name if rid is None else f"{self.watch.name} replica {rid}"
            stderr.print(f"[{self._elapsed():>6}] {who}: {phases_mod.LABELS.get(phase.name, phase.name)}")
        self._shown[rid] = len(timeline.phases)

    def __rich__(self):
        from rich.console import Group
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
        parts = [head, table]
        parts += [Text(line[:200], style="dim", overflow="ellipsis", no_wrap=True) for line in lines]
        return Group(*parts)


def _print_ready(outcome):
    url, key_path, model = outcome["endpoint"], outcome["key_path"], outcome["model"]
    stdout.print(f"[bold green]Ready[/]: {outcome['name']} serves {model}")
    stdout.print(f"  endpoint  {url}/v1")
    stdout.print(f"  API key   {key_path} (mode 0600)")
    stdout.print(f"  curl      curl {url}/v1/chat/completions -H \"Authorization: Bearer $(cat {key_path})\" "
                 f"-H 'Content-Type: application/json' -d '{{\"model\": \"{model}\", \"messages\": "
                 f"[{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'")
    stdout.print(f"  python    OpenAI(base_url=\"{url}/v1\", api_key=open(\"{key_path}\").read().strip())")


@click.command("up")
@plan_options
@click.option("--name", "-c", "--cluster", "name",
              help="Cluster name (gptoss- is prefixed). Default: gptoss-<model>. -c/--cluster as in SkyPilot.")
@click.option("--idle-minutes", "-i", "--idle-minutes-to-autostop", "idle_minutes", type=int, default=60,
              show_default=True, callback=positive_int,
              help="Tear the cluster down after this many minutes without a request.")
@click.option("--down", "down_when_idle", is_flag=True,
              help="Tear down (never stop) when idle: what gptoss-sky always does; accepted as in SkyPilot.")
@click.option("--no-autostop", is_flag=True, help="Keep the cluster until `gptoss-sky down`.")
@launch_options
def up(name, idle_minutes, down_when_idle, no_autostop, image, dryrun, yes, no_smoke, json_, envs, secrets,
       **plan_args):
    """Launch MODEL on the cheapest available GPU that fits, wait until it answers, smoke-test it."""
    if down_when_idle and no_autostop:
        raise UserError("--down tears the cluster down when idle; --no-autostop keeps it: give one")
    return _launch_common("cluster", plan_args, name, image, dryrun, yes, json_, no_smoke, envs, secrets,
                          idle_minutes=0 if no_autostop else idle_minutes)


@click.command("serve")
@plan_options
@click.option("--name", help="Service name (gptoss-svc-<model> by default).")
@click.option("--replicas", type=int, callback=positive_int, help="Fixed number of replicas.")
@click.option("--min-replicas", type=int, callback=non_negative_int, help="Autoscaling lower bound.")
@click.option("--max-replicas", type=int, callback=positive_int, help="Autoscaling upper bound.")
@click.option("--target-qps", type=float, callback=positive_number,
              help="Requests/s per replica before scaling out (with --min/--max-replicas).")
@click.option("--ondemand-fallback", is_flag=True, help="With --spot: fall back to on-demand replicas.")
@launch_options
def serve(name, replicas, min_replicas, max_replicas, target_qps, ondemand_fallback, image, dryrun, yes, no_smoke,
          json_, envs, secrets, **plan_args):
    """Serve MODEL as a SkyServe service: replicas, autoscaling, spot with on-demand fallback."""
    if replicas is not None and (min_replicas is not None or max_replicas is not None):
        raise UserError("give either --replicas or --min-replicas/--max-replicas, not both")
    if (min_replicas is None) != (max_replicas is None):
        raise UserError("--min-replicas and --max-replicas go together")
    if min_replicas is not None and (min_replicas < 0 or min_replicas > max_replicas):
        raise UserError(f"need 0 <= --min-replicas <= --max-replicas, got {min_replicas} and {max_replicas}")
    if target_qps is not None and min_replicas is None:
        raise UserError("--target-qps sets autoscaling: give it with --min-replicas/--max-replicas "
                        "(with fixed --replicas there is nothing to scale)")
    if ondemand_fallback and not plan_args["spot"]:
        raise UserError("--ondemand-fallback only applies with --spot")
    return _launch_common("service", plan_args, name, image, dryrun, yes, json_, no_smoke, envs, secrets,
                          replicas=replicas,
                          min_replicas=min_replicas, max_replicas=max_replicas, target_qps=target_qps,
                          ondemand_fallback=ondemand_fallback)


@click.command("scale")
@click.argument("name")
@click.option("--replicas", type=int, callback=positive_int, help="Fixed number of replicas.")
@click.option("--min-replicas", type=int, callback=non_negative_int, help="Autoscaling lower bound.")
@click.option("--max-replicas", type=int, callback=positive_int, help="Autoscaling upper bound.")
@click.option("--target-qps", type=float, callback=positive_number, help="Requests/s per replica before scaling out.")
@json_option
def scale(name, replicas, min_replicas, max_replicas, target_qps, json_):
    """Change a service's replicas (rolling update through SkyServe)."""
    from launcher.sky import skyapi

    name = state.validate_name(name)
    if replicas is not None and (min_replicas is not None or max_replicas is not None or target_qps is not None):
        raise UserError("give either --replicas R, or --min-replicas A --max-replicas B [--target-qps Q], not both")
    if replicas is None and (min_replicas is None or max_replicas is None):
        raise UserError("give --replicas R, or --min-replicas A --max-replicas B [--target-qps Q]")
    if min_replicas is not None and min_replicas > max_replicas:
        raise UserError(f"need 0 <= --min-replicas <= --max-replicas, got {min_replicas} and {max_replicas}")
    result = lifecycle.scale(skyapi.SkyClient(), name, replicas=replicas,
                             min_replicas=min_replicas, max_replicas=max_replicas, target_qps=target_qps)
    print_json(result) if json_ else stdout.print(f"{result['name']}: rolling update to {result['replica_policy']}")
    return 0


@click.command("status")
@click.argument("names", nargs=-1)
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", type=float, default=5.0, show_default=True, help="Seconds between --watch refreshes.")
@click.option("--window", type=float, default=2.0, show_default=True,
              help="Seconds between the two /metrics reads that tokens/s is measured over.")
@click.option("--no-metrics", is_flag=True, help="Skip reading the engines' /metrics.")
@json_option
def status(names, watch, interval, window, no_metrics, json_):
    """Deployments this tool launched: live state, price, cost so far, and the engine's own numbers
    (generation tokens/s, requests running/waiting, KV-cache use, TTFT/TPOT p50, prefix-cache hits)."""
    from launcher.sky import skyapi

    if watch and json_:
        raise UserError("--watch refreshes a table; it does not combine with --json")
    if interval <= 0 or window <= 0:
        raise UserError("--interval and --window must be positive seconds")
    wanted = [state.validate_name(n) for n in names]
    client = skyapi.SkyClient()

    memory = {} if watch else None  # --watch: each refresh measures from the previous one's scrape

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
        ready = sum(1 for x in replicas if x.get("status") == "READY")
        table.add_row(r["name"], r.get("kind") or "-", r.get("model") or "-", str(r.get("state")), r.get("cloud") or "-",
                      r.get("region") or "-", _money(r.get("price_per_hour")),
                      f"{(r.get('uptime_s') or 0) / 3600:.1f}h", _money(r.get("cost_so_far")),
                      f"{ready}/{len(replicas)}" if r.get("kind") == "service" else "-",
                      r.get("endpoint") or "-", *engine_cells(r.get("engine")))
        for x in replicas:
            table.add_row(f"  replica {x.get('id')}", "replica", "", str(x.get("status")), "", "",
                          _money(x.get("price_per_hour")), "", "", "", x.get("endpoint") or "-",
                          *engine_cells(x.get("engine")))
    return table


@click.command("endpoint")
@click.argument("name")
def endpoint(name):
    """Print only the endpoint URL of NAME (http://host:port)."""
    from launcher.sky import skyapi

    name = state.validate_name(name)
    click.echo(lifecycle.endpoint(skyapi.SkyClient(), name))
    return 0


@click.command("down")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True,
              help="Every deployment this client has a record of, and live gptoss-* ones SkyPilot says this "
                   "user owns (never another user's on a shared API server).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--purge", is_flag=True, help="Remove records even if the cloud reports errors (SkyPilot's --purge too).")
@json_option
def down(names, everything, yes, purge, json_):
    """Tear down what gptoss-sky launched: NAME... or --all. Tries every target; exits 1 if one stays."""
    from launcher.sky import skyapi

    if bool(names) == everything:
        raise UserError("give NAME... or --all (not both)")
    wanted = [state.validate_name(n) for n in names]
    client = skyapi.SkyClient()
    targets = lifecycle.down_targets(client, wanted, everything)
    if not targets:
        stderr.print("Nothing to tear down.")
    elif not yes and not click.confirm(f"Tear down {', '.join(n for n, _ in targets)}?", err=True):
        raise click.Abort()
    results = lifecycle.down(client, targets, purge, _progress(json_))
    stopped = []
    if everything and not any(not r["removed"] for r in results):
        for controller in lifecycle.idle_serve_controllers(client):
            if yes or click.confirm(f"No service is left; stop the idle serve controller {controller}?", err=True):
                try:
                    client.down(controller, purge=purge)
                except SkyError as exc:
                    results.append({"name": controller, "kind": "controller", "removed": False, "message": str(exc)})
                    continue
                stopped.append(controller)
    failed = [r for r in results if not r["removed"]]
    if json_:
        print_json({"removed": [r["name"] for r in results if r["removed"]], "controllers_stopped": stopped,
                    "results": results})
    else:
        for r in results:
            if r["removed"]:
                stdout.print(f"removed {r['name']} ({r['message']})", markup=False)
        for name in stopped:
            stdout.print(f"removed {name}", markup=False)
        for r in failed[:-1]:
            stderr.print(f"not removed: {r['name']}: {r['message']}", markup=False, soft_wrap=True)
    if failed:
        last = failed[-1]
        raise SkyError(f"{len(failed)} of {len(results)} not removed; {last['name']}: {last['message']}"
                       if len(failed) > 1 or len(results) > 1 else f"{last['name']}: {last['message']}")
    return 0


@click.command("forget")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def forget(name, yes, json_):
    """Delete NAME's local record and API key without asking SkyPilot (`down` tears down and forgets)."""
    full = state.validate_name(name)
    if not yes and not click.confirm(f"Forget {full} (its record and API key; anything still running keeps "
                                     "running and billing)?", err=True):
        raise click.Abort()
    removed = lifecycle.forget(full)
    if json_:
        print_json({"forgotten": full, "files": removed})
    else:
        stdout.print(f"forgot {full} ({len(removed)} file(s) removed; SkyPilot was not asked: if it still runs, "
                     f"`sky down {full}` or `sky serve down {full}` stops it)", markup=False)
    return 0


COMMANDS = [plan, up, serve, scale, status, endpoint, down, forget]

"""plan: every name and option checked, then the fitting offers priced and shown (also what up/serve start with)."""

from __future__ import annotations

import click
from rich.table import Table

from launcher.cli._common import (
    check_context,
    json_option,
    money,
    parse_gpu_spec,
    positive_int,
    print_json,
    stderr,
    table_console,
)
from launcher.cli.options import plan_options
from launcher.errors import UserError
from launcher.plan import catalog as catalog_mod
from launcher.plan import offers as plan_mod


def resolve(model, gpus, clouds, infra, context, engine, tool_server, engine_version=None, engine_args=(),
             model_source=None, quiet=False, spot=False, profile=None, **_):
    """Every name and option checked before any pricing: (catalog, model, GPU specs, cloud list).

    A --profile that is no catalog profile is a saved one (launcher/plan/saved_profiles): the catalog
    returned carries it, and with no --gpu the specs are the GPU and count it was measured on.

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
    if profile and profile not in catalog.engine(engine).profiles:
        from launcher.plan import saved_profiles

        catalog, _saved, measured_on = saved_profiles.apply(catalog, profile, m, engine, specs)
        specs = list(measured_on)
    check_context(m, context)
    cloud_list = [c.strip() for c in clouds.split(",") if c.strip()] if clouds is not None else None
    names, pin = plan_mod.check_infra(cloud_list, infra)
    chosen = [pin[0]] if pin else names or []
    if spot and chosen and all(c in plan_mod.NO_SPOT for c in chosen):
        raise UserError(f"--spot: {', '.join(chosen)} has no spot instances in SkyPilot; drop --spot or plan on "
                        "a cloud (--clouds/--infra)")
    if tool_server and not catalog.engine(engine).command.get("tool_server_flag"):
        raise UserError(f"--tool-server is not supported by --engine {engine}")
    return catalog, m, specs, cloud_list


def priced_plan(model, gpus, clouds, infra, spot, context, profile, optimize, engine, tool_server, dummy_weights,
          all_regions=False, engine_version=None, engine_args=(), model_source=None):
    """Resolve names and price the fitting recipes (the part plan, up and serve share)."""
    catalog, m, specs, cloud_list = resolve(model, gpus, clouds, infra, context, engine, tool_server,
                                             engine_version, engine_args, model_source, spot=spot, profile=profile)
    with stderr.status("Pricing offers with SkyPilot's catalog..."):
        result = plan_mod.build(catalog, m, gpu_specs=specs, clouds=cloud_list, infra=infra, spot=spot,
                                context=context, profile=profile, optimize=optimize, dummy_weights=dummy_weights,
                                engine=engine, tool_server=tool_server, all_regions=all_regions)
    return catalog, m, result


def print_plan(result, top, console=stderr):
    """The priced table: the result of `plan` (stdout), context for `up`/`serve` (stderr).

    Readable at 80 columns: the instance type column only appears on wider consoles (--json always has
    it), and long region names wrap inside their column instead of being cut.
    """
    for note in result.notes:
        stderr.print(f"[dim]{note}[/]")
    wide = console.width >= 110
    table = Table(box=None, header_style="bold", pad_edge=False)
    text_columns = ["GPU", "CLOUD", "REGION"] + (["INSTANCE"] if wide else [])
    number_columns = ["$/HOUR"] + (["READY"] if wide else []) + ["CONC", "CTX", "TOK/S", "$/1M"]
    for col in text_columns + number_columns:
        table.add_column(col, justify="left" if col in text_columns else "right", overflow="fold",
                         no_wrap=col not in ("REGION", "INSTANCE"))
    for o in result.offers[:top]:
        price = money(o.price_per_hour) if o.price_per_hour is not None else "unknown"
        cells = [f"{o.gpu}:{o.count}", o.cloud, o.region] + ([o.instance_type] if wide else [])
        cells += [price] + ([f"~{round(o.time_to_ready()['seconds'] / 60)} min"] if wide else [])
        cells += [f"{o.max_concurrency:.1f}x", f"{o.max_model_len // 1024}k",
                  f"{o.est_output_tokens_per_s:,.0f}", money(o.usd_per_million_output_tokens, 3)]
        table.add_row(*cells)
    console.print(table)
    per = ("region" if result.all_regions
           else "GPU kind, count and cloud at its cheapest region; --all-regions: every region")
    stderr.print(f"[dim]Shown {min(top, len(result.offers))} of {len(result.offers)} offers (one per {per}), "
                 f"ranked by {result.objective}. CONC: concurrent requests at the full context CTX; TOK/S: estimated "
                 "output tokens/s (catalogs/throughput.yaml); $/1M: $ per 1M output tokens; READY (estimated time to "
                 "answering on a fresh node, catalogs/startup.yaml) and instance types: --json or a wider "
                 "terminal.[/]")


def _pinned_infra_answers(infra):
    """`plan --infra kubernetes[/CTX]`: a context the API server cannot reach is said, not priced. With no
    API server answering, plan still works on the catalog (the launch checks again)."""
    from launcher import lifecycle
    from launcher.errors import ApiServerUnreachableError
    from launcher.sky import skyapi

    try:
        lifecycle.check_pinned_infra(skyapi.SkyPilotClient(), infra)
    except ApiServerUnreachableError:
        return


@click.command("plan")
@plan_options
@click.option("--top", type=int, default=15, show_default=True, callback=positive_int, help="Rows to show.")
@click.option("--all-regions", is_flag=True, help="One row per region and instance type, not per cloud.")
@json_option
def plan(top, all_regions, json_, **plan_args):
    """Price every GPU offer that fits MODEL, best first."""
    _, m, result = priced_plan(**plan_args, all_regions=all_regions)
    model = plan_args["model"]
    if plan_args.get("infra"):
        _pinned_infra_answers(plan_args["infra"])
    if not result.offers:  # the same answer, exit 2, with or without --json
        why = "".join(f" ({n})" for n in result.notes if ": not offered: " in n)
        raise UserError(f"no offer for {model} on {', '.join(result.clouds) or 'any cloud'}{why}; "
                        "try other --clouds, --gpu, --spot or a shorter --context")
    if json_:
        print_json([o.to_dict() for o in result.offers[:top]])
        return 0
    print_plan(result, top, console=table_console(80))
    _print_saved_profiles(m.name)
    return 0


def _print_saved_profiles(model_name):
    """The saved profiles (GPTOSS_SKY_HOME/profiles) measured on this model, one line each, on stderr."""
    from launcher.plan import saved_profiles

    for saved, p in saved_profiles.saved_for(model_name):
        stderr.print(f"Saved profile {saved}: {p.engine} on {p.accelerator}, "
                     f"target_qps_per_replica {p.target_qps_per_replica:g} at ttft-p90 <= {p.slo.ttft_p90_ms:g} ms, "
                     f"tpot-p50 <= {p.slo.tpot_p50_ms:g} ms ({p.bench.input_len}/{p.bench.output_len} tokens), "
                     f"measured {p.measured.at}: --profile {saved}", markup=False, soft_wrap=True)


COMMANDS = [plan]

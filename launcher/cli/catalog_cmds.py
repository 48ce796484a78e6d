"""`capacity` and `render`: the catalog-driven commands (no cloud, no network)."""

from __future__ import annotations

from pathlib import Path

import click

from launcher.cli._common import check_context, json_option, parse_gpu_spec, positive_int, print_json, stdout
from launcher.errors import UserError
from launcher.node import render as render_mod
from launcher.plan import capacity as capacity_mod
from launcher.plan import catalog as catalog_mod
from launcher.plan import recipes


@click.command("capacity")
@click.argument("model")
@click.option("--gpu", "gpu_spec", required=True, metavar="GPU[:N]", help="GPU kind and count, e.g. L40S:2.")
@click.option("--context", type=int, callback=positive_int, help="max_model_len (default: the recipe's, else 131072).")
@click.option("--kv-cache-dtype", type=click.Choice(["auto", "fp8"]), help="KV-cache precision.")
@click.option("--gpu-memory-utilization", type=float, help="Fraction of GPU memory vLLM may use.")
@click.option("--max-num-batched-tokens", type=int, callback=positive_int, help="Scheduler token budget.")
@click.option("--max-num-seqs", type=int, callback=positive_int, help="Scheduler sequence limit.")
@click.option("--vllm-version", help="Model an older vLLM's sizing rules (0.10.0 and later).")
@click.option("--profile", help="Use this profile's flags (latency, balanced, throughput).")
@click.option("--bare", is_flag=True, help="vLLM's own defaults: none of gptoss-sky's flags.")
@json_option
def capacity(model, gpu_spec, context, kv_cache_dtype, gpu_memory_utilization, max_num_batched_tokens,
             max_num_seqs, vllm_version, profile, bare, json_):
    """How much KV cache MODEL gets on GPU[:N] and how many max-length requests it holds.

    Prints the "Maximum concurrency for M tokens per request" that vLLM prints at startup, and says
    "does not fit" (exit 2: the input asks for what cannot start) where vLLM would refuse to start.
    """
    catalog = catalog_mod.load()
    m = catalog.model(model)
    check_context(m, context)  # the range plan, up and serve allow: shorter holds no request
    gpu, count = parse_gpu_spec(catalog, gpu_spec)
    count = count or 1
    engine = catalog.engine("vllm")
    options = {} if bare else recipes.engine_options(engine, m, gpu, count, profile or engine.default_profile)[0]
    if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
        raise click.BadParameter(f"must be in (0, 1], got {gpu_memory_utilization}",
                                 param_hint="--gpu-memory-utilization")
    if context is None and not bare:
        try:
            context = recipes.build(catalog, m, gpu, count, profile=profile).max_model_len
        except Exception:  # no recipe: report the model's full context
            context = None
    cap = capacity_mod.estimate(
        catalog, m, gpu, count, context=context, kv_cache_dtype=kv_cache_dtype,
        gpu_memory_utilization=gpu_memory_utilization, max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=max_num_seqs, vllm_version=vllm_version, options=options,
    )
    if json_:
        print_json(cap.to_dict())
    else:
        _print_capacity(cap)
    return 0 if cap.fits else 2


def _print_capacity(cap: capacity_mod.Capacity) -> None:
    budget = cap.total_gib_per_gpu * cap.gpu_memory_utilization
    stdout.print(f"[bold]{cap.model}[/] on {cap.count}x {cap.gpu} (TP {cap.tensor_parallel_size}), "
                 f"vLLM {cap.vllm_version}, max_model_len {cap.max_model_len}, KV {cap.kv_cache_dtype}")
    stdout.print(f"  weights      {cap.weights_gib_per_gpu:.2f} GiB per GPU "
                 f"({cap.weights_source}, {cap.moe_kernel} MoE kernel)")
    stdout.print(f"  budget       {cap.total_gib_per_gpu:.2f} GiB x {cap.gpu_memory_utilization:.2f} "
                 f"= {budget:.2f} GiB; activations {cap.residual_gib_per_gpu:.2f} GiB "
                 f"(max_num_batched_tokens {cap.max_num_batched_tokens}); "
                 f"CUDA graphs {cap.cudagraph_gib_per_gpu:.2f} GiB")
    stdout.print(f"  KV cache     {cap.kv_cache_gib_per_gpu:.2f} GiB per GPU = {cap.kv_cache_blocks} blocks "
                 f"({cap.kv_cache_tokens} tokens); one request needs {cap.blocks_per_request} blocks")
    if cap.fits:
        stdout.print(f"  Maximum concurrency for {cap.max_model_len} tokens per request: "
                     f"[bold]{cap.concurrency_text}[/]")
    else:
        stdout.print(f"  [red]does not fit[/]: {cap.reason}")


@click.command("render")
@click.option("--check", is_flag=True, help="Exit 1 if a committed file under tasks/ or services/ is stale.")
@click.option("--engine-commands", is_flag=True, help="Print every engine command line the files can run.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding tasks/ and services/ [default: this gptoss-sky checkout, never the current "
                   "directory]. Only files carrying the generated-by line are ever replaced or removed.")
@click.option("--no-validate", is_flag=True, help="Skip SkyPilot's schema check (faster).")
@click.option("--engine", type=click.Choice(["vllm", "sglang"]),
              help="With --engine-commands: only this engine's commands (one parser checks one engine).")
def render(check, engine_commands, root, no_validate, engine):
    """Regenerate tasks/ and services/ from catalogs/ and the templates."""
    catalog = catalog_mod.load()
    deployments = render_mod.committed_deployments(catalog)
    if root is None and not engine_commands:
        root = render_mod.project_root()
        if root is None:
            raise UserError("not running from a gptoss-sky checkout: give --root DIR (the folder to hold "
                            "tasks/ and services/)")
    if engine_commands:
        for path, deployment in deployments.items():
            if engine and deployment.recipes[0].engine.engine != engine:
                continue
            for recipe, command in render_mod.engine_commands(deployment):
                click.echo(f"# {path} on {recipe.accelerator}")
                click.echo(command)
        return 0
    rendered = {path: render_mod.render_text(catalog, d) for path, d in deployments.items()}
    if not no_validate:
        import yaml

        from launcher.sky import skyapi

        for text in rendered.values():
            config = yaml.safe_load(text)
            skyapi.task_from_config(config, secrets={name: "validation-only" for name in config["secrets"]})
    if check:
        taken = render_mod.conflicts(root, rendered)
        stale = [p for p in render_mod.stale_files(root, rendered) if p not in taken]
        if taken:
            click.echo(f"not generated by gptoss-sky (no generated-by line), render will not replace: "
                       f"{', '.join(taken)}", err=True)
        if stale:
            click.echo(f"stale: {', '.join(stale)}; run `gptoss-sky render --root {root}`", err=True)
        if taken or stale:
            return 2  # the checkout is out of date: the local setup, not a failure elsewhere
        click.echo(f"{len(rendered)} files up to date")
        return 0
    changed = render_mod.write_all(root, rendered)
    click.echo(f"wrote {len(rendered)} files ({len(changed)} changed) under {root}/tasks and {root}/services")
    return 0


COMMANDS = [capacity, render]

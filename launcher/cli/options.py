"""The option sets plan, up and serve share, defined once so the three commands cannot drift apart."""

from __future__ import annotations

import click

from launcher.cli._common import check_host_port, json_option, positive_int
from launcher.plan import offers as plan_mod


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
        click.option("--profile", default="balanced", show_default=True, metavar="balanced|latency|throughput|NAME",
                     help="Engine tuning profile: a catalog one, or a saved NAME "
                          "(GPTOSS_SKY_HOME/profiles/NAME.yaml: its flags, GPU and measured target QPS)."),
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
        click.option("--on-interrupt", type=click.Choice(["cancel", "leave"]), default=None,
                     help="What Ctrl-C does to SkyPilot's launch request: cancel it or leave it running "
                          "[default: ask on a terminal; cancel with -y, --json or no terminal]."),
        click.option("--env", "envs", multiple=True, metavar="K=V",
                     help="Environment variable for the node and engine "
                          "(repeatable; K alone takes this shell's value)."),
        click.option("--secret", "secrets", multiple=True, metavar="K[=V]",
                     help="Secret for the node, e.g. EXA_API_KEY (repeatable; K alone takes this shell's value). "
                          "Passed as a SkyPilot secret: never in the YAML, argv or --json."),
        json_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


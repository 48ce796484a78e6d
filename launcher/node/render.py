"""Renders deployments into SkyPilot task and SkyServe YAML with strict Jinja2 templates.

Each rendered text is parsed back with yaml.safe_load and, on request, validated by SkyPilot's own
parser (skyapi.task_from_config). `generate_all` produces the committed tasks/ and services/ files;
`up`/`serve` render the same templates on the fly for their own choice of GPUs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from launcher.errors import RenderError, UserError
from launcher.node import guard
from launcher.plan import recipes as recipes_mod
from launcher.plan import startup, throughput
from launcher.plan.catalog import Catalog
from launcher.plan.recipes import Recipe

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("launcher.node", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["tojson"] = lambda value: json.dumps(value)


def case_glob(pattern: str) -> str:
    """A catalog glob as a bash `case` pattern: every literal part shell-quoted, only `*` left active.

    '*RTX 6000 Ada*' -> "*'RTX 6000 Ada'*" (unquoted, the space ends the pattern: a syntax error)."""
    return "*".join(shlex.quote(part) if part else "" for part in pattern.split("*"))


_ENV.filters["sh"] = lambda value: shlex.quote(str(value))
_ENV.filters["case_glob"] = case_glob


@dataclass(frozen=True)
class Deployment:
    """Everything one YAML file needs: the model, the GPU recipes it may land on, and how to run it."""

    name: str
    recipes: tuple[Recipe, ...]
    service: bool = False
    image: bool = False
    use_spot: bool | None = None
    infra: str | None = None  # only for on-the-fly launches; committed files never pin infra
    idle_minutes: int = 0
    replicas: int | None = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_qps: float | None = None
    ondemand_fallback: bool = False
    title: str = ""
    usage: tuple[str, ...] = field(default=())
    cache: str | None = None  # --cache URI: a bucket SkyPilot mounts at CACHE_MOUNT (weights, compiled kernels)

    @property
    def model(self):
        return self.recipes[0].model


CACHE_MOUNT = "/gptoss-cache"
CACHE_STORES = ("s3://", "gs://", "r2://", "cos://", "oci://", "nebius://")


def check_cache_uri(uri: str) -> str:
    """A bucket URI SkyPilot can mount (optionally with a folder), or a one-line reason it is not."""
    azure = re.fullmatch(r"https://[a-z0-9]+\.blob\.core\.windows\.net/[a-z0-9-]+(/.*)?", uri)
    if not (azure or (uri.startswith(CACHE_STORES) and len(uri.split("://", 1)[1].strip("/")) > 0)):
        raise UserError(f"--cache {uri!r}: give a bucket URI SkyPilot mounts: "
                        f"{', '.join(s + 'BUCKET[/PATH]' for s in CACHE_STORES)} or "
                        "https://ACCOUNT.blob.core.windows.net/CONTAINER")
    return uri.rstrip("/")


def cache_key(recipe: Recipe) -> str:
    """Where one recipe's compiled kernels live in the cache: engine version, GPU kind and TP size, and a
    hash of everything that can change compiled code (the whole command line and its environment; a
    superset, so a change never reuses a stale kernel)."""
    words = recipe.engine_argv(tp=recipe.count) + [f"{k}={v}" for k, v in sorted(recipe.env.items())]
    digest = hashlib.sha256("\0".join(words).encode()).hexdigest()[:16]
    return f"{recipe.engine.engine}-{recipe.engine.version}/{recipe.gpu.slug}-tp{recipe.count}/{digest}"


def _sort_for_case(recipes: Sequence[Recipe]) -> list[Recipe]:
    """Most specific nvidia-smi pattern first, so '*A100*80GB*' is tried before '*A100*'."""
    return sorted(recipes, key=lambda r: (-len(r.gpu.nvidia_smi), r.gpu.name, r.count))


def _resources(recipes: Sequence[Recipe]) -> tuple[dict | None, list | None]:
    """An accelerator set when every choice has the same count, else any_of (one dict per choice)."""
    pairs = [(name, r.count) for r in recipes for name in r.gpu.catalog_names]
    if len({count for _, count in pairs}) == 1:
        return {name: count for name, count in pairs}, None
    return None, [{name: count} for name, count in pairs]


def guard_source() -> str:
    """launcher/node/guard.py's text: setup writes it to the node as gptoss_guard.py (a quoted heredoc)."""
    text = Path(guard.__file__).read_text().rstrip("\n")
    if any(line == "GPTOSS_GUARD_PY" for line in text.splitlines()):
        raise RenderError("launcher/node/guard.py contains the heredoc terminator GPTOSS_GUARD_PY")
    return text


def render_text(catalog: Catalog, deployment: Deployment) -> str:
    if not deployment.recipes:
        raise RenderError(f"{deployment.name}: no GPU recipe to render")
    if len({r.model.name for r in deployment.recipes}) != 1:
        raise RenderError(f"{deployment.name}: recipes for more than one model")
    if len({r.engine.engine for r in deployment.recipes}) != 1:
        raise RenderError(f"{deployment.name}: recipes for more than one engine")
    engine = deployment.recipes[0].engine
    model = deployment.model
    dummy = any(r.dummy_weights for r in deployment.recipes)
    accelerator_set, any_of = _resources(deployment.recipes)
    tool_server = deployment.recipes[0].tool_server
    context = dict(
        engine=engine, model=model, image=deployment.image, dummy_weights=dummy, tool_server=tool_server,
        recipes=_sort_for_case(deployment.recipes), guard_source=guard_source(),
        cache=deployment.cache, cache_mount=CACHE_MOUNT, cache_key=cache_key,
        hf_folder="models--" + model.hf_repo.replace("/", "--"),
    )
    try:
        setup = _ENV.get_template("setup.sh.j2").render(context).rstrip("\n")
        run = _ENV.get_template("run.sh.j2").render(context).rstrip("\n")
        template = "service.yaml.j2" if deployment.service else "task.yaml.j2"
        return _ENV.get_template(template).render(
            context, name=deployment.name, title=deployment.title or deployment.name,
            usage=deployment.usage, use_spot=deployment.use_spot, infra=deployment.infra,
            accelerator_set=accelerator_set, any_of=any_of, idle_minutes=deployment.idle_minutes, setup=setup, run=run,
            probe_body={"model": model.served_names[0], "messages": [{"role": "user", "content": "ping"}],
                        "max_tokens": 1},
            initial_delay_seconds=startup.initial_delay_seconds(deployment.recipes), replicas=deployment.replicas,
            min_replicas=deployment.min_replicas, max_replicas=deployment.max_replicas,
            target_qps=deployment.target_qps, ondemand_fallback=deployment.ondemand_fallback,
        )
    except jinja2.TemplateError as exc:
        raise RenderError(f"{deployment.name}: template error: {exc}") from exc


def render_config(catalog: Catalog, deployment: Deployment) -> dict[str, Any]:
    text = render_text(catalog, deployment)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderError(f"{deployment.name}: rendered YAML does not parse: {exc}") from exc


def engine_commands(deployment: Deployment) -> list[tuple[Recipe, str]]:
    """The exact engine command the run script executes on each GPU choice."""
    return [(r, r.engine_command()) for r in _sort_for_case(deployment.recipes)]


# --- the committed files ------------------------------------------------------------------------

def _usage(kind: str, path: str, name: str, port: int, secret: str) -> tuple[str, ...]:
    key = f"export {secret}=$(openssl rand -hex 32)"
    if kind == "service":
        return (
            f"Serve:  {key}; sky serve up -n {name} {path} --secret {secret}",
            f"Query:  curl $(sky serve status --endpoint {name})/v1/models -H \"Authorization: Bearer ${secret}\"",
        )
    return (
        f"Launch: {key}; sky launch -c {name} {path} --secret {secret}",
        f"Query:  curl http://$(sky status --endpoint {port} {name})/v1/models -H \"Authorization: Bearer ${secret}\"",
        "Idle shutdown: add --env GPTOSS_IDLE_MINUTES=60 -i 1 --down (the server exits after 60 idle minutes).",
    )


def committed_deployments(catalog: Catalog) -> dict[str, Deployment]:
    """Relative path -> Deployment for every file under tasks/ and services/, for every engine."""
    out: dict[str, Deployment] = {}
    for engine in catalog.engines.values():
        suffix = "" if engine.engine == "vllm" else f"-{engine.engine}"
        for model in catalog.models.values():
            if model.base:  # a fine-tune's files would be its base's with another repo: rendered on demand
                continue
            shipped = recipes_mod.shipped(catalog, model, engine=engine.engine)
            groups: list[tuple[str, tuple[Recipe, ...], str]] = [
                (r.slug, (r,), f"{model.name} on {r.count}x {r.gpu.name} with {engine.engine} "
                 f"{engine.version}: max_model_len {r.max_model_len}, {r.capacity.concurrency_text} "
                 "full-length requests predicted") for r in shipped]
            any_fit = tuple(recipes_mod.candidates(catalog, model, engine=engine.engine))
            if any_fit:
                gpus = ", ".join(r.accelerator for r in any_fit)
                groups.append((f"{model.short}-any{suffix}", any_fit,
                               f"{model.name} with {engine.engine} {engine.version} on the cheapest available of: "
                               f"{gpus} (SkyPilot's optimizer picks and fails over)"))
            for slug, recipes, title in groups:
                for kind, folder in (("task", "tasks"), ("service", "services")):
                    path = f"{folder}/{slug}.sky.yaml"
                    name = f"gptoss-{slug}"
                    out[path] = Deployment(
                        name=name, recipes=recipes, service=kind == "service", title=title,
                        usage=_usage(kind, path, name, engine.port, engine.api_key_env),
                        replicas=None if kind == "service" else 1,
                        min_replicas=1 if kind == "service" else None,
                        max_replicas=3 if kind == "service" else None,
                        target_qps=min(throughput.target_qps_per_replica(
                            catalog, r.model.name, r.gpu.name, r.count) for r in recipes)
                        if kind == "service" else None,
                    )
    return out


def generate_all(catalog: Catalog) -> dict[str, str]:
    return {path: render_text(catalog, d) for path, d in committed_deployments(catalog).items()}


# --- what render owns: only files carrying its marker ------------------------------------------------

MARKER = "# Generated by `gptoss-sky render`"  # the second line of every file render writes
FOLDERS = ("tasks", "services")


def generated(path: Path) -> bool:
    """Whether `path` is a file render wrote (it carries the marker line near the top)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    return any(line.startswith(MARKER) for line in head.splitlines()[:8])


def project_root() -> Path | None:
    """The gptoss-sky checkout this code runs from (None when installed as a package)."""
    root = Path(__file__).resolve().parents[2]  # launcher/node/render.py -> the checkout
    try:
        project = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    return root if 'name = "gptoss-sky"' in project and all((root / f).is_dir() for f in FOLDERS) else None


def _check_marked(rendered: dict[str, str]) -> None:
    for path, text in rendered.items():
        if not any(line.startswith(MARKER) for line in text.splitlines()[:8]):
            raise RenderError(f"{path}: rendered text lacks the marker line {MARKER!r}")


def conflicts(root: Path, rendered: dict[str, str]) -> list[str]:
    """Generated paths already taken by something render did not write (a user's file, a folder)."""
    return [p for p in rendered if os.path.lexists(root / p) and not ((root / p).is_file() and generated(root / p))]


def stale_files(root: Path, rendered: dict[str, str]) -> list[str]:
    """Paths whose text differs from what rendering gives now, plus generated leftovers no recipe makes.
    Files without the marker are not render's: never listed as leftovers."""
    stale = [p for p, text in rendered.items() if not (root / p).is_file() or (root / p).read_text() != text]
    for folder in FOLDERS:
        for path in sorted((root / folder).glob("*.sky.yaml")):
            rel = f"{folder}/{path.name}"
            if rel not in rendered and path.is_file() and generated(path):
                stale.append(rel)
    return stale


def write_all(root: Path, rendered: dict[str, str]) -> list[str]:
    """Write every file and remove generated files no recipe produces any more; return what changed.
    Refuses (writing nothing) when a path it would write holds a file it did not generate."""
    _check_marked(rendered)
    taken = conflicts(root, rendered)
    if taken:
        raise RenderError(f"not overwriting {', '.join(taken)} under {root}: not generated by gptoss-sky "
                          f"(no {MARKER!r} line); move them away, or render into another --root")
    changed = stale_files(root, rendered)
    try:
        for folder in FOLDERS:
            (root / folder).mkdir(parents=True, exist_ok=True)
            for path in (root / folder).glob("*.sky.yaml"):
                if f"{folder}/{path.name}" not in rendered and path.is_file() and generated(path):
                    path.unlink()
        for rel, text in rendered.items():
            (root / rel).write_text(text)
    except OSError as exc:
        raise RenderError(f"cannot write under {root}: {exc.strerror or exc}") from None
    return changed

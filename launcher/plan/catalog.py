"""Loads catalogs/*.yaml (models, GPUs, engines) into typed, frozen objects, and resolves user names.

Data lives in catalogs/, never in code. Every file is checked against its type (launcher/plan/schema.py)
before it is read; malformed files raise CatalogError naming the file and key; unknown model or GPU names
raise CatalogError naming what is allowed. Imports nothing from launcher but errors and schema.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from launcher.errors import CatalogError
from launcher.plan import schema
from launcher.plan.schema import Architecture  # catalog.Architecture: a model's shapes, typed once in schema


def catalog_dir() -> Path:
    """The package's own catalogs (launcher/catalogs in a wheel) first, then the checkout's catalogs/.

    The wheel's copy comes first so that an unrelated folder named catalogs/ beside an installed
    launcher (site-packages/catalogs) is never read. GPTOSS_SKY_CATALOGS overrides both.
    """
    override = os.environ.get("GPTOSS_SKY_CATALOGS")
    if override:
        return Path(override)
    package = Path(__file__).resolve().parent.parent  # launcher/
    for candidate in (package / "catalogs", package.parent / "catalogs"):
        if (candidate / "gpus.yaml").is_file():
            return candidate
    raise CatalogError(f"catalogs/ not found in {package} or beside it; set GPTOSS_SKY_CATALOGS")


@dataclass(frozen=True)
class Model:
    name: str
    hf_repo: str
    revision: str
    aliases: tuple[str, ...]
    served_names: tuple[str, ...]
    download_exclude: tuple[str, ...]
    params_total_b: float
    params_active_b: float
    checkpoint_gib: float
    architecture: Architecture
    observed_weights_gib: Mapping[str, Mapping[int, float]]
    min_context: int = 2048  # shortest --context a deployment may serve (models.yaml says why)
    base: str | None = None  # a fine-tune of this model: same shapes, its own repo and revision

    def with_source(self, spec: str) -> Model:
        """This model's shapes served from another repo: 'REPO' or 'REPO@REVISION' (--model-source).

        The served name becomes REPO (what the engine would call it), so smoke and bench address it so."""
        repo, _, revision = spec.strip().partition("@")
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo) or repo.endswith((".", "-")):
            raise CatalogError(f"--model-source {spec!r}: expected a Hugging Face repo ORG/NAME[@REVISION]")
        if revision and not re.fullmatch(r"[\w][\w./-]*", revision):
            raise CatalogError(f"--model-source {spec!r}: the revision is a commit, tag or branch name")
        return replace(self, hf_repo=repo, revision=revision or "main", base=self.base or self.name,
                       served_names=(repo, repo.rsplit("/", 1)[1]), aliases=(repo,))

    @property
    def short(self) -> str:
        """'20b' / '120b': used in file and cluster names."""
        return self.name.removeprefix("gpt-oss-")


class Gpu(schema.GpuEntry):
    """A GPU of gpus.yaml under its SkyPilot name, with every spelling a cloud catalog uses for it."""

    name: str
    catalog_names: tuple[str, ...]

    @property
    def slug(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Override:
    model: str
    gpu: str
    tensor_parallel_size: int
    options: Mapping[str, Any]
    why: str


@dataclass(frozen=True)
class Profile:
    name: str
    gpu_multiplier: int
    options: Mapping[str, Any]


class Engine(schema.EngineHead):
    """One serving engine's pinned version, install, flags and capacity rules (catalogs/engines/*.yaml)."""

    api_key_config: Mapping[str, str] | None
    install: Mapping[str, Any]
    command: Mapping[str, Any]
    common_options: Mapping[str, Any]
    harmony_vocab: Mapping[str, Any]
    generations: Mapping[str, Mapping[str, Any]]
    overrides: tuple[Override, ...]
    moe_kernels: Mapping[str, Mapping[str, int]]
    profiles: Mapping[str, Profile]
    capacity: Mapping[str, Any] = {}
    metrics: Mapping[str, Any] = {}  # /metrics family names per quantity
    node_requirements: Mapping[str, Any] = {}  # cuda, min_driver, why
    user_options: Mapping[str, Any] = {}  # --engine-arg, applied after every profile
    # Every route the engine can serve, by the method smoke's auth check probes it with (post, get,
    # patch); all must refuse a request without the key. `health_path` is the one exception.
    guarded_paths: Mapping[str, tuple[str, ...]] = {}

    def option_list_path(self) -> Path:
        """catalogs/engines/options/<engine>-<version>.txt: the option strings of the engine's own parser."""
        return catalog_dir() / "engines" / "options" / f"{self.engine}-{self.version}.txt"

    def engine_env(self) -> dict[str, str]:
        """Every variable this file puts into the engine's environment -> the key that sets it: the
        generations' env, the compile caches (--cache), without_multicast's env (TP on a host with NVLink
        multicast off), and the API key variable unless it is in own_env."""
        out = {name: f"generations.{gen}.env" for gen, spec in self.generations.items() for name in spec["env"]}
        out.update({name: "compile_caches" for name in self.compile_caches})
        if self.without_multicast is not None:
            out.update({name: "without_multicast.env" for name in self.without_multicast.env})
        if self.api_key_env not in self.own_env:
            out[self.api_key_env] = "api_key_env"
        return out

    @property
    def packages(self) -> list[str]:
        return [p.format(version=self.version) for p in self.install["packages"]]


@dataclass(frozen=True)
class RecipePolicy:
    """catalogs/recipes.yaml: a GPU count is a recipe when it holds min_concurrency full-length requests at a
    context of at least min_context; its default context is the longest of context_steps that still does."""

    min_concurrency: int
    min_context: int
    context_steps: tuple[int, ...]  # longest first, ending at min_context


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, Model]
    gpus: Mapping[str, Gpu]
    unsupported_gpus: Mapping[str, str]
    engines: Mapping[str, Engine]
    policy: RecipePolicy

    def model(self, name: str) -> Model:
        """Resolve '20b', 'gpt-oss-20b' or 'openai/gpt-oss-20b'."""
        wanted = name.strip().lower()
        for model in self.models.values():
            if wanted in (alias.lower() for alias in model.aliases):
                return model
        allowed = sorted(alias for m in self.models.values() for alias in m.aliases)
        raise CatalogError(f"unknown model {name!r}; choose one of: {', '.join(allowed)}")

    def gpu(self, name: str) -> Gpu:
        """Resolve a GPU by SkyPilot name or any cloud spelling, case-insensitively."""
        wanted = name.strip().lower()
        for gpu in self.gpus.values():
            if wanted in (n.lower() for n in (gpu.name, *gpu.catalog_names)):
                return gpu
        for bad, why in self.unsupported_gpus.items():
            if wanted == bad.lower():
                raise CatalogError(f"GPU {bad} is not supported: {why}; supported: {', '.join(self.gpus)}")
        hint = difflib.get_close_matches(name.upper(), list(self.gpus), n=1)
        did_you_mean = f" (did you mean {hint[0]}?)" if hint else ""
        raise CatalogError(f"unknown GPU {name!r}{did_you_mean}; supported: {', '.join(self.gpus)}")

    def engine(self, name: str = "vllm") -> Engine:
        try:
            return self.engines[name]
        except KeyError:
            raise CatalogError(f"unknown engine {name!r}; choose one of: {', '.join(self.engines)}") from None

    def gpu_for_catalog_name(self, catalog_name: str) -> Gpu | None:
        """The GPU a cloud catalog row's AcceleratorName stands for, if gpt-oss can use it."""
        wanted = catalog_name.lower()
        for gpu in self.gpus.values():
            if wanted in (n.lower() for n in gpu.catalog_names):
                return gpu
        return None


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    return data


def _read(path: Path, model: type[BaseModel], where: str | None = None) -> dict[str, Any]:
    """A catalog file's mapping, after checking every value's type against `model` (launcher/plan/schema.py)."""
    data = _yaml(path)
    schema.check(model, data, where or path.name)
    return data


def _build(cls: type, raw: Any, where: str, **extra: Any) -> Any:
    """Construct a dataclass from a mapping, rejecting unknown or missing keys with a clear message."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in fields(cls) if f.name not in extra}
    for key in raw:
        if key not in known:
            hint = difflib.get_close_matches(str(key), sorted(known), n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else ""
            raise CatalogError(f"{where}: unknown key {key!r}{tip}")
    try:
        return cls(**raw, **extra)
    except TypeError as exc:
        raise CatalogError(f"{where}: {exc}") from exc


def _load_models(path: Path) -> dict[str, Model]:
    models = {}
    entries = _read(path, schema.ModelsFile)["models"]
    for name, raw in entries.items():
        where = f"{path.name}: models.{name}"
        raw = dict(raw)
        if raw.get("base") is not None:  # a fine-tune: the base's shapes, its own keys on top
            base = entries.get(raw["base"])
            if not isinstance(base, dict) or base.get("base") is not None:
                raise CatalogError(f"{where}: base {raw['base']!r} is not a model of its own in {path.name}")
            raw = {**base, **raw}
        shapes = raw.get("architecture")
        if not isinstance(shapes, dict):
            raise CatalogError(f"{where}.architecture: expected a mapping, got {type(shapes).__name__}")
        raw["architecture"] = Architecture.model_validate(shapes)  # checked with the file above
        for key in ("aliases", "served_names", "download_exclude"):
            raw[key] = tuple(raw.get(key, ()))
        raw["observed_weights_gib"] = {
            kernel: {int(tp): float(v) for tp, v in by_tp.items()}
            for kernel, by_tp in (raw.get("observed_weights_gib") or {}).items()
        }
        models[name] = _build(Model, raw, where, name=name)
    return models


def _load_gpus(path: Path) -> tuple[dict[str, Gpu], dict[str, str]]:
    data = schema.check(schema.GpusFile, _yaml(path), path.name)
    gpus = {name: Gpu(**entry.model_dump(exclude={"catalog_names"}), name=name,
                      catalog_names=(name,) if entry.catalog_names is None else entry.catalog_names)
            for name, entry in data.gpus.items()}
    return gpus, dict(data.unsupported)


PROBE_METHODS = ("post", "get", "patch")


def _guarded_paths(raw: Any, health_path: Any, where: str) -> dict[str, tuple[str, ...]]:
    """guarded_paths: {post|get|patch: [/path, ...]}; the health path may not be listed."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: guarded_paths must map {'/'.join(PROBE_METHODS)} to lists of paths")
    paths: dict[str, tuple[str, ...]] = {}
    for method, listed in raw.items():
        if method not in PROBE_METHODS:
            raise CatalogError(f"{where}: guarded_paths.{method}: use one of {', '.join(PROBE_METHODS)}")
        if not isinstance(listed, list) or not all(isinstance(p, str) and p.startswith("/") for p in listed):
            raise CatalogError(f"{where}: guarded_paths.{method} must be a list of paths starting with /")
        if health_path in listed:
            raise CatalogError(f"{where}: guarded_paths.{method} lists the health path {health_path}")
        paths[method] = tuple(listed)
    return paths


def _load_engine(path: Path) -> Engine:
    where = f"{path.parent.name}/{path.name}"
    raw = dict(_read(path, schema.EngineFile, where))
    raw["overrides"] = tuple(
        _build(Override, o, f"{where}: overrides[{i}]") for i, o in enumerate(raw.get("overrides") or ())
    )
    raw["profiles"] = {
        name: _build(Profile, p, f"{where}: profiles.{name}", name=name)
        for name, p in (raw.get("profiles") or {}).items()
    }
    raw["guarded_paths"] = _guarded_paths(raw.get("guarded_paths") or {}, raw.get("health_path"), where)
    engine = schema.check(Engine, raw, where)
    for key in ("program", "model_flag", "served_name_flag", "host_flag", "port_flag", "tensor_parallel_flag",
                "context_flag", "dummy_weights", "tool_server_flag"):
        if key not in engine.command:
            raise CatalogError(f"{where}: command.{key} is missing")
    if engine.default_profile not in engine.profiles:
        raise CatalogError(f"{where}: default_profile {engine.default_profile!r} is not a profile")
    _check_engine_env(engine, path.parent / "options", where)
    return engine


def read_env_list(path: Path) -> set[str]:
    """engines/options/<engine>-<version>.env.txt: one variable a line, `#` starting a comment."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogError(f"engines/options/{path.name}: {exc}; dump it with scripts/dump_engine_env.py") from exc
    return {line.split("#", 1)[0].strip() for line in text.splitlines()} - {""}


def _check_engine_env(engine: Engine, options: Path, where: str) -> None:
    """Every variable the engine file sets for the engine is one its pinned release reads (as its flags are
    the release's options); own_env names only variables the release does not read."""
    listed = options / f"{engine.engine}-{engine.version}.env.txt"
    known = read_env_list(listed)
    release = f"{engine.engine} {engine.version}"
    for name, key in engine.engine_env().items():
        if name not in known:
            raise CatalogError(f"{where}: {key} sets {name}, which {release} does not read "
                               f"(engines/options/{listed.name}, dumped from its source)")
    for name in engine.own_env:
        if name in known:
            raise CatalogError(f"{where}: own_env names {name}, which {release} reads too "
                               f"(engines/options/{listed.name}): set it for the engine, not as gptoss-sky's own")


def _load_policy(path: Path) -> RecipePolicy:
    raw = _read(path, schema.RecipePolicyFile)
    steps = tuple(raw["context_steps"])
    if list(steps) != sorted(set(steps), reverse=True) or not steps or steps[-1] != raw["min_context"]:
        raise CatalogError(f"{path.name}: context_steps {list(steps)} must run from the longest context down to "
                           f"min_context ({raw['min_context']}), each once")
    if raw["min_concurrency"] < 1:
        raise CatalogError(f"{path.name}: min_concurrency {raw['min_concurrency']} must be 1 or more")
    return RecipePolicy(raw["min_concurrency"], raw["min_context"], steps)


@functools.lru_cache(maxsize=4)
def load(directory: str | None = None) -> Catalog:
    """Load and validate every catalog file (cached per directory)."""
    root = Path(directory) if directory else catalog_dir()
    gpus, unsupported = _load_gpus(root / "gpus.yaml")
    engines = {}
    for path in sorted((root / "engines").glob("*.yaml")):
        engine = _load_engine(path)
        engines[engine.engine] = engine
    catalog = Catalog(_load_models(root / "models.yaml"), gpus, unsupported, engines,
                      _load_policy(root / "recipes.yaml"))
    for engine in engines.values():
        for gpu in gpus.values():
            if gpu.generation in engine.supported_generations and gpu.generation not in engine.generations:
                raise CatalogError(f"engines/{engine.engine}.yaml: no flags for generation {gpu.generation!r}")
    return catalog


@dataclass(frozen=True)
class PriceSnapshot:
    """catalogs/prices/snapshot.yaml: the bundled SkyPilot price catalog `plan` prices offline from."""

    date: str  # when its rows were read (SNAPSHOT.md)
    folder: Path  # prices/<version>/, laid out as SkyPilot reads it
    clouds: tuple[str, ...]  # each with <cloud>/vms.csv in `folder`


def load_price_snapshot() -> PriceSnapshot:
    """The snapshot of the catalogs in use (read once per catalog folder)."""
    return _load_price_snapshot(str(catalog_dir()))


@functools.lru_cache(maxsize=4)
def _load_price_snapshot(directory: str) -> PriceSnapshot:
    prices = Path(directory) / "prices"
    raw = _read(prices / "snapshot.yaml", schema.PriceSnapshotFile, "prices/snapshot.yaml")
    folder = prices / raw["version"]
    missing = [c for c in raw["clouds"] if not (folder / c / "vms.csv").is_file()]
    if missing:
        raise CatalogError(f"prices/snapshot.yaml: clouds {', '.join(missing)} have no "
                           f"{raw['version']}/<cloud>/vms.csv beside it")
    return PriceSnapshot(raw["date"], folder, tuple(raw["clouds"]))


def load_images(directory: str | None = None) -> list[dict[str, Any]]:
    """catalogs/images.yaml: the GPU machine images SkyPilot launches and the CUDA their driver runs."""
    root = Path(directory) if directory else catalog_dir()
    return list(_read(root / "images.yaml", schema.ImagesFile)["images"])

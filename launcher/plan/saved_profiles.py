"""Tuned profiles kept under GPTOSS_SKY_HOME/profiles/NAME.yaml: what `tune` measured, usable as --profile NAME.

A saved profile holds only where it was measured: one model, one GPU kind and count, one engine. Using it
anywhere else is refused (its flags and its target QPS would be guesses there). Its flags take the place a
catalog profile's take (after the generation's and the overrides, before --engine-arg) and are checked
against the engine's own option list exactly as --engine-arg is. Imports no click/rich/sky.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import ConfigDict, Field

from launcher.errors import CatalogError, UserError
from launcher.plan import catalog as catalog_mod
from launcher.plan import schema
from launcher.plan.catalog import Catalog, Gpu, Model
from launcher.sky import state

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_Strict = ConfigDict(extra="forbid", strict=True, frozen=True)


class Slo(pydantic.BaseModel):
    """The latency the profile was tuned to meet (ms)."""

    model_config = _Strict
    ttft_p90_ms: float = Field(gt=0)
    tpot_p50_ms: float = Field(gt=0)


class BenchShape(pydantic.BaseModel):
    """The requests it was measured with, and the concurrency at which it still met the SLO."""

    model_config = _Strict
    input_len: int = Field(gt=0)
    output_len: int = Field(gt=0)
    concurrency: int = Field(gt=0)


class Measured(pydantic.BaseModel):
    """When (ISO 8601, UTC) and how (the command, dummy or real weights, the endpoint) it was measured."""

    model_config = _Strict
    at: str
    how: str


class SavedProfile(pydantic.BaseModel):
    """One file under profiles/: the flags a tune found best, and the per-replica load it measured."""

    model_config = _Strict
    model: str
    gpu: str
    gpu_count: int = Field(gt=0)
    engine: str
    engine_version: str
    options: dict[str, schema.Scalar | list[schema.Scalar] | dict[str, Any]]
    target_qps_per_replica: float = Field(gt=0)
    slo: Slo
    bench: BenchShape
    measured: Measured

    @property
    def accelerator(self) -> str:
        return f"{self.gpu}:{self.gpu_count}"


def folder() -> Path:
    return state.home() / "profiles"  # state.write_file("profiles", ...) writes here


def path(name: str) -> Path:
    return folder() / f"{name}.yaml"


def names() -> list[str]:
    """Every saved profile's name (readable or not), sorted."""
    try:
        return sorted(p.stem for p in folder().glob("*.yaml") if NAME.fullmatch(p.stem))
    except OSError:
        return []


def check_name(name: str, builtin: Sequence[str]) -> None:
    if not NAME.fullmatch(name):
        raise UserError(f"profile name {name!r}: use lower-case letters, digits, '-' and '_' (at most 40), "
                        "starting with a letter or digit")
    if name in builtin:
        raise UserError(f"profile name {name!r} is a catalog profile ({', '.join(builtin)}); pick another name")


def load(name: str, builtin: Sequence[str] = ()) -> SavedProfile:
    """The saved profile NAME; UserError naming what exists when there is none, or what is wrong in the file."""
    where = path(name)
    if not NAME.fullmatch(name) or not where.is_file():
        saved = names()
        allowed = ", ".join([*builtin, *saved]) or "none"
        raise UserError(f"--profile {name}: no such profile (catalog: {', '.join(builtin) or 'none'}; saved under "
                        f"{folder()}: {', '.join(saved) or 'none'}); choose one of: {allowed}")
    try:
        data = yaml.safe_load(where.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--profile {name}: {where} is not readable YAML ({reason}); fix or remove it") from None
    try:
        return schema.check(SavedProfile, data, str(where))
    except CatalogError as exc:
        raise UserError(f"--profile {name}: {exc} (README: Saved profiles)") \
            from None


def saved_for(model: str) -> list[tuple[str, SavedProfile]]:
    """(name, profile) of every readable saved profile for this model; unreadable ones are skipped."""
    out = []
    for name in names():
        try:
            profile = load(name)
        except UserError:
            continue
        if profile.model == model:
            out.append((name, profile))
    return out


def save(name: str, profile: SavedProfile, builtin: Sequence[str]) -> Path:
    """Write profiles/NAME.yaml (atomic, 0600), replacing a profile of that name."""
    check_name(name, builtin)
    return state.write_file("profiles", f"{name}.yaml", yaml.safe_dump(profile.model_dump(), sort_keys=False))


def _as_engine_args(options: Mapping[str, Any]) -> list[str]:
    """The options as --engine-arg strings, so they are checked by the same parser as the user's flags."""
    args = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            args.append(f"{flag} {' '.join(map(str, value))}")
        elif isinstance(value, Mapping):
            args.append(f"{flag} {json.dumps(value, separators=(',', ':'))}")
        else:
            args.append(f"{flag} {value}")
    return args


def apply(catalog: Catalog, name: str, model: Model, engine_name: str,
          gpu_specs: Sequence[tuple[Gpu, int | None]]) -> tuple[Catalog, SavedProfile, list[tuple[Gpu, int]]]:
    """(catalog whose engine has profile NAME, the saved profile, the GPU specs to plan on).

    Refuses a profile measured on another model, engine or GPU (kind or count), and flags the engine's
    option list does not have; with no --gpu, the plan is on the profile's own GPU and count."""
    from launcher.plan import engine_control

    engine = catalog.engine(engine_name)
    profile = load(name, tuple(engine.profiles))
    where = f"--profile {name} ({path(name)})"
    if profile.model != model.name:
        raise UserError(f"{where} was measured on {profile.model}, not {model.name}: use it with {profile.model}, "
                        "or tune this model")
    if profile.engine != engine_name:
        raise UserError(f"{where} was measured on {profile.engine}: give --engine {profile.engine}")
    try:
        gpu = catalog.gpu(profile.gpu)
    except CatalogError:
        raise UserError(f"{where} names GPU {profile.gpu!r}, which catalogs/gpus.yaml does not list") from None
    for asked, count in gpu_specs:
        if asked.name != gpu.name or count not in (None, profile.gpu_count):
            given = asked.name + (f":{count}" if count else "")
            raise UserError(f"{where} was measured on {profile.accelerator}, not {given}: give --gpu "
                            f"{profile.accelerator} (or none)")
    try:
        options, _ = engine_control.parse_engine_args(engine, _as_engine_args(profile.options))
    except UserError as exc:
        raise UserError(f"{where}: {str(exc).replace('--engine-arg ', '', 1)}") from None
    saved = catalog_mod.Profile(name=name, gpu_multiplier=1, options=options)
    engine = engine.model_copy(update={"profiles": {**engine.profiles, name: saved}})
    return replace(catalog, engines={**catalog.engines, engine_name: engine}), profile, [(gpu, profile.gpu_count)]

"""Engine control at launch: `--engine-version`, `--engine-arg`, `--env` and `--secret`, checked offline.

`apply` returns a Catalog whose engine is the one asked for (its version installs on the node and its
version's memory rules size the plan; its image tag follows) with the user's flags applied after every
profile, so plan, capacity and render need no parameter of their own. Flags are checked against the
engine's own option list (catalogs/engines/options/), flags gptoss-sky sets are refused with the reason.
Secrets are read from the local environment here and only ever travel as SkyPilot secrets.
Imports no click/rich/sky.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from launcher.errors import CatalogError, UserError
from launcher.plan import schema
from launcher.plan.capacity import parse_version, version_rules
from launcher.plan.catalog import Catalog, Engine, read_env_list

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_ENV_PREFIXES = ("GPTOSS_", "SKYPILOT_")


def apply(catalog: Catalog, engine_name: str, version: str | None = None,
          args: Sequence[str] = ()) -> tuple[Catalog, list[str]]:
    """(catalog with the engine adjusted, warnings to show). Raises UserError naming a bad version or flag."""
    engine = catalog.engine(engine_name)
    notes: list[str] = []
    if version and version != engine.version:
        engine, note = _with_version(engine, version)
        notes += [note] if note else []
    if args:
        options, more = parse_engine_args(engine, args)
        engine = engine.model_copy(update={"user_options": {**engine.user_options, **options}})
        notes += more
    if engine is catalog.engine(engine_name):
        return catalog, notes
    return replace(catalog, engines={**catalog.engines, engine_name: engine}), notes


def _with_version(engine: Engine, version: str) -> tuple[Engine, str | None]:
    parse_version(version)  # "invalid vLLM version ..." for anything but a release number
    if engine.capacity.get("version_rules"):
        version_rules(engine, version)  # older than the oldest modelled release: refused
    image = engine.image.replace(engine.version, version) if engine.version in engine.image else engine.image
    note = None
    if version not in engine.validated_versions:
        note = (f"{engine.engine} {version} is not a version gptoss-sky has validated "
                f"({', '.join(engine.validated_versions)}): the plan uses the memory rules for it, but flags, "
                "kernels and startup are unchecked")
    return engine.model_copy(update={"version": version, "image": image}), note


def _nearest_list(engine: Engine, suffix: str, what: str, checks: str) -> tuple[Any, str]:
    """(engines/options/<engine>-<version><suffix>, its version) for the engine's version, else for the nearest
    older version listed (the oldest when none is older)."""
    folder = engine.option_list_path().parent
    prefix = f"{engine.engine}-"
    versions = {p.name.removeprefix(prefix).removesuffix(suffix): p for p in folder.glob(f"{prefix}*{suffix}")}
    versions = {v: p for v, p in versions.items() if re.fullmatch(r"\d+(\.\d+)*", v)}  # not <version>.env.txt
    if not versions:
        raise UserError(f"no {what} for {engine.engine} under {folder}; {checks} cannot be checked")
    listed = sorted(versions, key=parse_version)
    older = [v for v in listed if parse_version(v) <= parse_version(engine.version)]
    version = (older or listed)[-1]
    return versions[version], version


def option_list(engine: Engine) -> tuple[set[str], str]:
    """The engine's option strings for its version, else for the nearest older version listed.

    With <engine>-<version>.values.json beside the list, its flags (short spellings too) count as well."""
    path, version = _nearest_list(engine, ".txt", "option list", "--engine-arg")
    flags = {line.strip() for line in path.read_text().splitlines() if line.startswith("-")}
    return flags | set(_value_rules(path)), version


def env_list(engine: Engine) -> tuple[set[str], str]:
    """The variables the engine's release reads (<engine>-<version>.env.txt), as `option_list` picks its list."""
    path, version = _nearest_list(engine, ".env.txt", "environment list", "--env")
    return read_env_list(path), version


def _value_rules(list_path: Any) -> dict[str, Any]:
    """What each flag takes (value or not, choices, int/float), dumped from the engine's own argparse."""
    rules_path = list_path.with_name(list_path.stem + ".values.json")
    if not rules_path.is_file():
        return {}
    where = f"engines/options/{rules_path.name}"
    try:
        rules = json.loads(rules_path.read_text())
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{where}: {exc}") from exc
    if not isinstance(rules, dict):
        raise CatalogError(f"{where}: expected an object of flags at the top level")
    flags = {k: v for k, v in rules.items() if k.startswith("-")}
    schema.check(schema.FlagRules, flags, where)
    return flags


def _check_values(flag: str, values: list[str], rule: Mapping[str, Any], where: str) -> None:
    """Refuse what the engine's parser would: a value for a switch, none for an option, a bad choice or number."""
    if not rule.get("value"):
        if values:
            raise UserError(f"--engine-arg {flag} is a switch in {where}: it takes no value (got {' '.join(values)})")
        return
    if not values:
        raise UserError(f"--engine-arg {flag} needs a value in {where}")
    if rule.get("nargs") is None and len(values) > 1:
        raise UserError(f"--engine-arg {flag} takes one value in {where}, got {len(values)}")
    for value in values:
        choices = rule.get("choices")
        if choices and value not in choices:
            raise UserError(f"--engine-arg {flag} {value}: {where} allows {', '.join(choices)}")
        kind = {"int": int, "float": float}.get(rule.get("type", ""))
        if kind is not None:
            try:
                finite = math.isfinite(kind(value))
            except ValueError:
                finite = False
            if not finite:
                wanted = "an integer" if kind is int else "a finite number"
                raise UserError(f"--engine-arg {flag} {value}: {where} wants {wanted}")


def parse_engine_args(engine: Engine, args: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """['--max-num-seqs 128', '--enable-prefix-caching'] -> ({max_num_seqs: 128, ...}, warnings).

    Each --engine-arg is one flag, then its value after a space or '=', which reaches the engine as written
    (JSON, quotes, `*`, spaces and newlines kept; see `split_engine_arg`)."""
    known, listed_version = option_list(engine)
    listed = engine.option_list_path().with_name(f"{engine.engine}-{listed_version}.txt")
    rules = _value_rules(listed)
    notes = []
    if listed_version != engine.version:
        notes.append(f"--engine-arg checked against {engine.engine} {listed_version}'s options "
                     f"(no list for {engine.version})")
    options: dict[str, Any] = {}
    for arg in args:
        flag, values = split_engine_arg(arg, rules, known)
        why = engine.reserved_flags.get(flag)
        if why:
            raise UserError(f"--engine-arg {flag} is set by gptoss-sky: {why}")
        if not flag.startswith("--"):
            raise UserError(f"--engine-arg {flag}: give the flag's long --spelling")
        if flag not in known:
            hint = difflib.get_close_matches(flag, sorted(known), n=1)
            tip = f" (did you mean {hint[0]}?)" if hint else ""
            raise UserError(f"--engine-arg {flag}: {engine.engine} {listed_version} has no such option{tip}")
        if flag in rules:
            _check_values(flag, values, rules[flag], f"{engine.engine} {listed_version}")
        value: bool | str | int | float | list[Any]  # what the engine's config file takes
        if flag.startswith("--no-") and not values:
            key, value = flag[5:].replace("-", "_"), False  # emitted back as --no-<flag>
        else:
            key = flag.lstrip("-").replace("-", "_")
            value = True if not values else _scalar(values[0]) if len(values) == 1 else [_scalar(v) for v in values]
        options[key] = value
    return options, notes


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def split_engine_arg(arg: str, rules: Mapping[str, Any] | None = None,
                     known: Collection[str] = ()) -> tuple[str, list[str]]:
    """'--FLAG VALUE' or '--FLAG=VALUE' -> (flag, values), each value exactly as the engine must see it.

    The value is everything after the flag's '=' or first spaces, as written: JSON (`{"temperature": 0.5}`),
    `["*"]`, quotes inside it, `*`, spaces and newlines stay. Only a value that is, as a whole, one
    shell-quoted word ('...' or "...") loses those outer quotes, as a shell would. A flag the engine takes
    several values for (nargs) splits them at spaces with shell quoting, unless the value is one JSON document."""
    if _CONTROL.search(arg):
        raise UserError(f"--engine-arg {arg!r}: control characters (other than newline and tab) cannot reach "
                        "the engine's command line")
    match = re.match(r"\s*(-[^\s=]*)(=|\s+|$)", arg)
    if not match or match.group(1) in ("-", "--"):
        raise UserError(f"--engine-arg {arg!r}: give one flag and its values, e.g. '--max-num-seqs 128'")
    flag, rest = match.group(1), arg[match.end():]
    if not rest and match.group(2) != "=":
        return flag, []
    json_document = _is_json_document(rest)
    several = ((rules or {}).get(flag) or {}).get("nargs") not in (None, "?")
    if _one_quoted_word(rest) or (several and not json_document):
        try:
            values = shlex.split(rest)
        except ValueError as exc:
            raise UserError(f"--engine-arg {arg!r}: {exc}") from None
    else:
        values = [rest]
    another = None if json_document else next(
        (w for v in values for w in v.split() if w.startswith("--") and w.partition("=")[0] in known), None)
    if another:
        raise UserError(f"--engine-arg {arg!r}: one flag per --engine-arg (repeat the option for {another})")
    return flag, values


def _one_quoted_word(text: str) -> bool:
    """`'a b'` or `"{...}"`: the whole text is one shell word, in quotes."""
    if len(text) < 2 or text[0] not in "'\"" or text[-1] != text[0]:
        return False
    try:
        return len(shlex.split(text)) == 1
    except ValueError:
        return False


def _is_json_document(text: str) -> bool:
    if text.lstrip()[:1] not in ("{", "["):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class _Int(int):
    """An integer read from --engine-arg that keeps its spelling on the command line."""

    text = ""

    def __str__(self) -> str:
        return self.text


class _Float(float):
    """A number read from --engine-arg that keeps its spelling ('1e-1' stays '1e-1', not '0.1')."""

    text = ""

    def __str__(self) -> str:
        return self.text


def _scalar(text: str) -> Any:
    """'128' -> 128, '0.95' -> 0.95 (finite numbers), anything else unchanged: the capacity plan reads numbers,
    while the command line gets the value as written (str() of the number is its spelling)."""
    for kind in (_Int, _Float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if not math.isfinite(number):
            return text
        number.text = text
        return number
    return text


def parse_envs(pairs: Sequence[str], engine: Engine) -> dict[str, str]:
    """--env K=V (or K, taking the value from this shell, as SkyPilot does) -> {K: V}."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        _check_name("--env", name, engine)
        if not sep:
            if name not in os.environ:
                raise UserError(f"--env {name}: not set in this shell; give --env {name}=VALUE")
            value = os.environ[name]
        out[name] = value
    return out


def parse_secrets(names: Sequence[str], engine: Engine) -> dict[str, str]:
    """--secret K (value from this shell) or K=V -> {K: V}. Values only ever go to SkyPilot as secrets."""
    out = {}
    for item in names:
        name, sep, value = item.partition("=")
        _check_name("--secret", name, engine)
        if not sep:
            if not os.environ.get(name):
                raise UserError(f"--secret {name}: not set (or empty) in this shell; export {name} first")
            value = os.environ[name]
        out[name] = value
    return out


def check_no_overlap(envs: Mapping[str, str], secrets: Mapping[str, str]) -> None:
    """A variable is an --env (in the YAML, shown) or a --secret (never shown), not both: SkyPilot would keep
    one of the two values, and a secret's value could land in the YAML as an env."""
    both = sorted(set(envs) & set(secrets))
    if both:
        raise UserError(f"--env {both[0]} and --secret {both[0]}: give a variable as one or the other "
                        "(--secret keeps its value out of the YAML, records and output)")


def _check_name(option: str, name: str, engine: Engine) -> None:
    if not ENV_NAME.fullmatch(name):
        raise UserError(f"{option} {name!r}: a variable name is letters, digits and '_', not starting with a digit")
    if name == engine.api_key_env or name.startswith(RESERVED_ENV_PREFIXES):
        raise UserError(f"{option} {name}: set by gptoss-sky (the API key, GPTOSS_* and SKYPILOT_* are ours)")
    if engine.env_prefix and name.startswith(engine.env_prefix):  # the engine's own: checked as --engine-arg is
        known, version = env_list(engine)
        if name not in known:
            hint = difflib.get_close_matches(name, sorted(known), n=1)
            tip = f" (did you mean {hint[0]}?)" if hint else ""
            instead = "" if version == engine.version else f", checked against {version}'s: none for {engine.version}"
            raise UserError(f"{option} {name}: {engine.engine} {version} reads no such variable{tip} "
                            f"(engines/options/{engine.engine}-{version}.env.txt{instead})")


def describe(secrets: Mapping[str, str]) -> list[str]:
    """Secret names for records and --json; never their values."""
    return sorted(secrets)

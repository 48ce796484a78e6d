"""A wrongly typed value in any catalog file is one line naming the file, the key, the value and the type
expected, exit 2, through the command that reads the file (launcher/plan/schema.py)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from clitools import invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.errors import CatalogError
from launcher.plan import catalog, startup, throughput

SOURCE = Path(__file__).resolve().parents[1] / "catalogs"
PLAN = ("plan", "20b", "--clouds", "lambda", "--json")  # --json: every offer with its time to ready
CAPACITY = ("capacity", "20b", "--gpu", "L4")


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False))


def _set(data: Any, keys: tuple[Any, ...], value: Any) -> Any:
    """Set the value at `keys`; return the one it replaced."""
    for key in keys[:-1]:
        data = data[key]
    old, data[keys[-1]] = data[keys[-1]], value
    return old


def _dotted(keys: tuple[Any, ...]) -> str:
    """gpus.L4.total_gib, figures[0].count: how a reader of the file names a key."""
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


# (file, key path, wrongly typed value, the type it should have, the command that reads the file)
CASES = [
    ("gpus.yaml", ("gpus", "L4", "total_gib"), "22.05", "a number", CAPACITY),
    ("gpus.yaml", ("gpus", "L4", "catalog_names"), "L4", "a list", CAPACITY),  # loaded as a tuple
    ("engines/vllm.yaml", ("validated_versions",), "0.32.0", "a list", CAPACITY),
    ("models.yaml", ("models", "gpt-oss-20b", "architecture", "head_dim"), 64.5, "an integer", CAPACITY),
    ("engines/vllm.yaml", ("capacity", "block_size"), "16", "an integer", CAPACITY),
    ("engines/sglang.yaml", ("command", "served_names_multiple"), "no", "true or false", CAPACITY),
    ("images.yaml", ("images", 0, "driver"), "580", "an integer", ("doctor", "--json")),
    ("evals.yaml", ("evals", "gpqa", "questions"), "198", "an integer",
     ("eval", "--endpoint", "http://127.0.0.1:9", "--model", "openai/gpt-oss-20b", "--json")),
    ("startup.yaml", ("probe_margin", "factor"), "1.5", "a number", PLAN),
    ("throughput.yaml", ("figures", 0, "count"), "1", "an integer", PLAN),
    ("prices/snapshot.yaml", ("date",), 202611, "a string (quote it)", PLAN),
    ("recipes.yaml", ("context_steps", 0), "131072", "an integer", CAPACITY),
    ("engines/options/vllm-0.32.0.values.json", ("--max-num-seqs", "value"), "yes", "true or false",
     (*PLAN, "--engine-arg", "--max-num-seqs 8")),
]


@pytest.mark.parametrize(("name", "keys", "value", "expected", "command"), CASES, ids=[c[0] for c in CASES])
def test_a_wrongly_typed_value_is_one_line_naming_file_key_value_and_type(
        edit, name, keys, value, expected, command):
    edit(name, lambda data: _set(data, keys, value))
    result = invoke(*command)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert name in line and _dotted(keys) in line and repr(value) in line and f"expected {expected}" in line, line


def test_every_catalog_file_the_code_reads_has_a_case():
    """A new catalog file gets a type and a case above (prices/v8 is SkyPilot's own CSV, read by its reader)."""
    files = {str(p.relative_to(SOURCE)) for p in SOURCE.rglob("*")
             if p.is_file() and p.suffix in (".yaml", ".json")}
    assert files == {c[0] for c in CASES}


def test_an_unknown_key_names_the_closest_known_one(edit):
    edit("gpus.yaml", lambda data: data["gpus"]["L4"].update(totl_gib=data["gpus"]["L4"].pop("total_gib")))
    result = invoke(*CAPACITY)
    assert result.exit_code == 2
    # The misspelling is named first; its right spelling being missing counts as one more.
    assert result.stderr.strip() == \
        "Error: gpus.yaml: unknown key gpus.L4.totl_gib; did you mean 'total_gib'? (and 1 more)"


def _leaves(data: Any, keys: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every scalar value with its key path, except engine flags (any flag the engine takes is allowed)."""
    if isinstance(data, dict):
        return [leaf for k, v in data.items() if k not in ("options", "common_options")
                for leaf in _leaves(v, (*keys, k))]
    if isinstance(data, list):
        return [leaf for i, v in enumerate(data) for leaf in _leaves(v, (*keys, i))]
    return [] if data is None else [(keys, data)]


def _wrong(value: Any) -> Any:
    """A value of another YAML type than `value`'s."""
    if isinstance(value, str):
        return [value]
    return str(value).lower() if isinstance(value, bool) else str(value)


TYPED = ["gpus.yaml", "models.yaml", "engines/vllm.yaml", "engines/sglang.yaml", "images.yaml", "evals.yaml",
         "startup.yaml", "throughput.yaml", "recipes.yaml", "prices/snapshot.yaml"]
LEAVES = [(name, keys, value) for name in TYPED for keys, value in _leaves(_load(SOURCE / name))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LEAVES))
def test_any_value_of_another_type_is_refused_naming_its_key(leaf):
    name, keys, value = leaf
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "catalogs"
        shutil.copytree(SOURCE, root)
        data = _load(root / name)
        _set(data, keys, _wrong(value))
        _dump(root / name, data)
        with pytest.raises(CatalogError) as caught:
            if name == "startup.yaml":
                startup.load.__wrapped__(str(root))
            elif name == "throughput.yaml":
                throughput._data.__wrapped__(str(root))
            elif name == "evals.yaml":
                from launcher.verify import evals

                evals.load_references(root / name)
            elif name == "images.yaml":
                catalog.load_images(str(root))
            elif name == "prices/snapshot.yaml":
                catalog._load_price_snapshot.__wrapped__(str(root))
            else:
                catalog.load.__wrapped__(str(root))
    message = str(caught.value)
    assert "\n" not in message and Path(name).name in message and _dotted(keys) in message, message

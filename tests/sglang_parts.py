"""Pieces of SGLang 0.5.23 the tests use: its option list (tests/fixtures) and its own config merger.
Shared by tests/test_sglang.py and tests/test_engine_args.py."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def known_flags(name: str) -> set[str]:
    return {line.strip() for line in (FIXTURES / name).read_text().splitlines() if line.startswith("--")}


def sglang_config_merger():
    """SGLang 0.5.23's own ConfigArgumentMerger, loaded from the installed wheel's file by path: the module
    needs only argparse and yaml, while importing the sglang package would pull torch. CI installs the wheel
    without dependencies (.ci/run)."""
    import importlib.metadata
    import importlib.util

    try:
        dist = importlib.metadata.distribution("sglang")
    except importlib.metadata.PackageNotFoundError:
        raise AssertionError("sglang is not installed: pip install --no-deps sglang==0.5.23 "
                             "(as .ci/run does)") from None
    assert dist.version == "0.5.23", dist.version
    path = dist.locate_file("sglang/srt/utils/server_args_config_parser.py")
    spec = importlib.util.spec_from_file_location("sglang_config_merger", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ConfigArgumentMerger

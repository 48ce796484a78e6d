"""Write catalogs/engines/options/<engine>-<version>.env.txt: the environment variables a pinned engine
release reads, dumped from the release's own source, beside its option list.

    /tmp/vllm-check-0.32.0/bin/python scripts/dump_engine_env.py vllm   # the CPU venv check-vllm-args builds
    python scripts/dump_engine_env.py sglang                            # sglang installed --no-deps

vLLM: the keys of `vllm.envs.environment_variables` (vllm/envs.py; vLLM's own check calls any other VLLM_*
variable unknown, vllm/platforms/interface.py `validate_environ`). SGLang: every field of
`sglang.srt.environ.Envs` (loaded by path: the module is stdlib-only, the package pulls torch), and the
third-party cache variables the release itself sets (`third_party_cache_defaults`). A variable read
elsewhere is listed only where a catalog needs it (`compile_caches`), with the file and line it is read at;
the dump fails if that line is gone. The catalog loader refuses any variable a catalog sets for the engine
that the list lacks (launcher/plan/catalog.py).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "catalogs" / "engines" / "options"

# Read outside vllm/envs.py, needed by engines/vllm.yaml's compile_caches: (variable, distribution, file in it,
# what the line reads). flashinfer-python is the version vLLM pins (its Requires-Dist).
VLLM_ELSEWHERE = [
    ("TORCHINDUCTOR_CACHE_DIR", "vllm", "vllm/snapshot/runtime.py", 'os.environ.get("TORCHINDUCTOR_CACHE_DIR")'),
    ("TRITON_CACHE_DIR", "vllm", "vllm/snapshot/runtime.py", 'os.environ.get("TRITON_CACHE_DIR")'),
    ("FLASHINFER_WORKSPACE_BASE", "flashinfer-python", "flashinfer/jit/env.py", '"FLASHINFER_WORKSPACE_BASE"'),
]


def _line_of(dist: str, path: str, needle: str) -> str:
    """'path:line (dist version)' of the first line holding `needle`; fails when the release lacks it."""
    source = Path(str(importlib.metadata.distribution(dist).locate_file(path)))
    for number, line in enumerate(source.read_text().splitlines(), 1):
        if needle in line:
            return f"{path}:{number} ({dist} {importlib.metadata.version(dist)})"
    raise SystemExit(f"{needle} is not in {source}: the release no longer reads it there")


def vllm() -> tuple[str, list[str], list[str]]:
    import vllm.envs as envs

    version = importlib.metadata.version("vllm")
    header = [f"# environment variables vLLM {version} reads: the keys of vllm/envs.py's environment_variables, "
              "dumped from the release by scripts/dump_engine_env.py"]
    names = sorted(envs.environment_variables)
    extra = ["# read elsewhere in the release, for engines/vllm.yaml's compile_caches (file:line it is read at)"]
    for name, dist, path, needle in VLLM_ELSEWHERE:
        if name not in envs.environment_variables:
            extra.append(f"{name}  # {_line_of(dist, path, needle)}")
    return version, header + names, extra


def sglang() -> tuple[str, list[str], list[str]]:
    version = importlib.metadata.version("sglang")
    path = "sglang/srt/environ.py"
    spec = importlib.util.spec_from_file_location(
        "sglang_environ", importlib.metadata.distribution("sglang").locate_file(path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = sorted(name for name, value in vars(module.Envs).items() if isinstance(value, module.EnvField))
    header = [f"# environment variables SGLang {version} reads: the fields of {path}'s Envs, dumped from the "
              "release by scripts/dump_engine_env.py"]
    extra = [f"# set by the release itself for its compiled-kernel caches ({path} third_party_cache_defaults; "
             "read by Triton, inductor, FlashInfer)"]
    for name in module.third_party_cache_defaults():
        if name not in names:
            where = _line_of("sglang", path, f'"{name}":')
            extra.append(f"{name}  # {where}")
    return version, header + names, extra


def main() -> int:
    engines = {"vllm": vllm, "sglang": sglang}
    if len(sys.argv) != 2 or sys.argv[1] not in engines:
        print(f"usage: dump_engine_env.py {{{'|'.join(engines)}}}", file=sys.stderr)
        return 2
    engine = sys.argv[1]
    version, lines, extra = engines[engine]()
    target = OUT / f"{engine}-{version}.env.txt"
    target.write_text("\n".join(lines + extra) + "\n")
    print(f"{target}: {len(lines) - 1 + len(extra) - 1} variables")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Parse `python -m sglang.launch_server ...` lines (one per stdin line) with SGLang's own argument parser.

    gptoss-sky render --engine-commands --engine sglang | python scripts/check_sglang_args.py

Needs `pip install sglang==<pinned>` in the interpreter that runs it (no GPU needed to parse). `$VAR` and
`${VAR}` are replaced by "1" first. Prints OK or the parser's error per line; exits 1 if any is rejected.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys


def main() -> int:
    from sglang.srt.server_args import ServerArgs

    bad = checked = 0
    for n, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "1", line))
        if words[:3] != ["python", "-m", "sglang.launch_server"]:
            print(f"FAIL  line {n}: not a 'python -m sglang.launch_server' line")
            bad += 1
            continue
        parser = argparse.ArgumentParser(prog="sglang.launch_server", exit_on_error=False)
        ServerArgs.add_cli_args(parser)
        err = io.StringIO()
        checked += 1
        try:
            with contextlib.redirect_stderr(err):
                parser.parse_args(words[3:])
            print(f"OK    line {n}")
        except (SystemExit, argparse.ArgumentError) as exc:
            bad += 1
            detail = err.getvalue().strip().splitlines()[-1:] or [str(exc)]
            print(f"FAIL  line {n}: {detail[0]}")
    print(f"{checked} checked, {bad} rejected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

#!/bin/bash
# Check profiles.py (the profile table) on a machine without a GPU: the same driver against the fake `vllm`
# (localcheck/site: serve and bench serve) at a small load, the commands as commands.txt holds them.
#   bash benchmarks/gpu/localcheck/profiles.sh OUTDIR [RUNS] [PLAN]   (from the repository root)
set -euo pipefail
out=${1:?usage: profiles.sh OUTDIR [RUNS] [PLAN]}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out/stage"
tar -xJf "${SHAPES:-/work/shared/gpu/gpt-oss-shapes.tar.xz}" -C "$out/stage"
PATH="$here/bin:$PATH" PYTHONPATH="$here/site" FAKE_VLLM_CHUNK_DELAY=0.002 python3 "$here/../profiles.py" run \
  --only "${2:-20b-bare,20b-balanced}" --plan "${3:-8,v8,1,v1,4,4,1,8}" --input-len 64 --output-len 256 \
  --stage "$out/stage" --out "$out/results" --startup-timeout 120 | tee "$out/driver.log"

#!/bin/bash
# Check the one-GPU start-up run (node_device.sh one) on a machine without a GPU: the tasks staged by
# stage_startup.sh in .gpu-stage/ and its queue.txt run with real bash against a fake `vllm` (localcheck/site)
# and a stub nvidia-smi, a small load per step.
#   bash benchmarks/gpu/localcheck/one.sh OUTDIR   (from the repository root, after stage_startup.sh)
set -euo pipefail
out=${1:?usage: one.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out/stage"
tar -xJf .gpu-stage/gpt-oss-shapes.tar.xz -C "$out/stage"
PATH="$here/bin:$PATH" GPTOSS_NODE_ROOT="$out/var-tmp-gptoss-sky" python3 "$here/../node_proof.py" --local \
  --yaml-dir .gpu-stage --stage "$out/stage" --site "$here/site" --out "$out/results" --queue .gpu-stage/queue.txt \
  --drop-page-cache --concurrency 4 --prompts 4 --metrics-period 0.5 --startup-timeout 120 > "$out/driver.log" 2>&1
cat "$out/results/summary.txt"

#!/bin/bash
# Check the two-lane start-up run (node_device.sh lanes) on a machine without a GPU: the tasks staged by
# stage_startup.sh in .gpu-stage/ run with real bash against a fake `vllm` (localcheck/site) and a stub
# nvidia-smi, both lanes side by side meeting at the barrier, a small load per step.
#   bash benchmarks/gpu/localcheck/lanes.sh OUTDIR   (from the repository root, after stage_startup.sh)
set -euo pipefail
out=${1:?usage: lanes.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out/stage"
tar -xJf .gpu-stage/gpt-oss-shapes.tar.xz -C "$out/stage"
for l in 0 1; do
  PATH="$here/bin:$PATH" python3 "$here/../node_proof.py" --local --yaml-dir .gpu-stage --stage "$out/stage" \
    --site "$here/site" --out "$out/lane$l" --queue ".gpu-stage/lane$l.queue" --lane "$l" --lanes 2 \
    --barrier "$out/barrier" --concurrency 4 --prompts 4 --metrics-period 0.5 --startup-timeout 120 \
    > "$out/lane$l.log" 2>&1 &
done
wait
cat "$out"/lane*/summary.txt

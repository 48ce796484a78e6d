#!/bin/bash
# Check the two-GPU run (node_device.sh tp2) on a machine without a GPU: stage_tp2.sh's two tasks run with real
# bash against the fake `vllm` (localcheck/site) and the stub nvidia-smi, with --gpus 2 and the lent host's
# multicast-off variables, then compare_tp2.py. The fake's KV numbers are its own, so the comparison's verdict
# here means nothing; that it runs, and that the run script chose trtllm, does.
#   bash benchmarks/gpu/localcheck/tp2.sh OUTDIR   (from the repository root)
set -euo pipefail
out=${1:?usage: tp2.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out/stage"
bash "$here/../stage_tp2.sh" "$PWD" "${PYTHON:-python3}" "$out/gpu-stage" > "$out/stage.log"
tar -xJf "$out/gpu-stage/gpt-oss-shapes.tar.xz" -C "$out/stage"
PATH="$here/bin:$PATH" NCCL_NVLS_ENABLE=0 GPTOSS_NODE_ROOT="$out/var-tmp-gptoss-sky" python3 "$here/../node_proof.py" \
  --local --gpus 2 --yaml-dir "$out/gpu-stage" --stage "$out/stage" --site "$here/site" --out "$out/results" \
  --queue "$out/gpu-stage/tp2.queue" --concurrency 4 --prompts 4 --metrics-period 0.5 --startup-timeout 120 \
  > "$out/driver.log" 2>&1
cat "$out/results/summary.txt"
"${PYTHON:-python3}" "$here/../compare_tp2.py" "$out/results" || true

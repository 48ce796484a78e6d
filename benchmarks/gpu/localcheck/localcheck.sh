#!/bin/bash
# Check node_proof.py on a machine without a GPU: the rendered 20b task runs with real bash against a fake
# `vllm` (localcheck/site) and a stub nvidia-smi; cold, warm and warmall steps with every task at a small load.
#   bash benchmarks/gpu/localcheck/localcheck.sh OUTDIR   (from the repository root, gptoss-sky installed)
set -euo pipefail
out=${1:?usage: localcheck.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out/yaml" "$out/stage"
gptoss-sky up 20b --gpu H200 --dummy-weights --dryrun > "$out/yaml/20b.yaml" 2> "$out/render.err"
tar -xJf "${SHAPES:-/work/shared/gpu/gpt-oss-shapes.tar.xz}" -C "$out/stage"
printf '%s\n' "20b-cold 20b cold probes+smoke+bench+vbench" "20b-warm 20b warm bench+vbench" \
  "20b-warmall 20b warmall none" > "$out/queue.txt"
PATH="$here/bin:$PATH" python3 "$here/../node_proof.py" --local --yaml-dir "$out/yaml" --stage "$out/stage" \
  --site "$here/site" --out "$out/results" --queue "$out/queue.txt" --concurrency 8 --prompts "${PROMPTS:-8}" \
  --metrics-period 0.5 --startup-timeout 120

#!/bin/bash
# Fill the checkout's git-ignored .gpu-stage/ for the two-GPU run of issue 20 (TP2.md): the driver, the shapes,
# the two tasks exactly as `gptoss-sky up` renders them for H200:2 with dummy weights, and their queue.
#   stage_tp2.sh CHECKOUT PYTHON [STAGE_DIR]
set -euo pipefail
repo=$1 py=$2
here=$(cd "$(dirname "$0")" && pwd)
st=${3:-"$repo/.gpu-stage"}
rm -rf "$st" && mkdir -p "$st"
cp "$here/node_proof.py" "$here/node_device.sh" "$st/"
cp "${SHAPES:-/work/shared/gpu/gpt-oss-shapes.tar.xz}" "$st/gpt-oss-shapes.tar.xz"
render() {  # NAME MODEL [up options...]
  local name=$1 model=$2; shift 2
  (cd "$repo" && PYTHONPATH="$repo" "$py" -m launcher.cli up "$model" --gpu H200:2 --dummy-weights --dryrun -y "$@") \
    > "$st/$name.yaml" 2> "$st/$name.render.err"
  for block in setup run; do
    "$py" -c "import sys; sys.path.insert(0, '$here'); from node_proof import yaml_block; print(yaml_block(open('$st/$name.yaml').read(), '$block'))" | bash -n
  done
}
render 120b-x2 120b                        # the balanced task (tasks/120b-h200-x2.sky.yaml's flags)
render 20b-latency-x2 20b --profile latency
# STEP YAML CACHE TASKS: a cold start of each, the run block verbatim, key probes and smoke once healthy.
printf '%s\n' "120b-tp2 120b-x2 cold probes+smoke" "20b-latency-tp2 20b-latency-x2 cold probes+smoke" > "$st/tp2.queue"
git -C "$repo" rev-parse HEAD > "$st/main-commit.txt"
ls -la "$st"

#!/bin/bash
# Fill the checkout's git-ignored .gpu-stage/ for node_device.sh: the driver, the shapes, and the 20b/120b
# tasks exactly as `gptoss-sky up MODEL --gpu H200 --dummy-weights --dryrun` renders them from that checkout.
#   stage_gpu.sh CHECKOUT PYTHON QUEUE_FILE
set -euo pipefail
repo=$1 py=$2 queue=$3
here=$(cd "$(dirname "$0")" && pwd)
st="$repo/.gpu-stage"
mkdir -p "$st"
cp "$here/node_proof.py" "$here/node_device.sh" "$st/"
cp "$queue" "$st/queue.txt"
[ -s "$st/gpt-oss-shapes.tar.xz" ] || cp /work/shared/gpu/gpt-oss-shapes.tar.xz "$st/"
for m in 20b 120b; do
  (cd "$repo" && PYTHONPATH="$repo" "$py" -m launcher.cli up "$m" --gpu H200 --dummy-weights --dryrun) \
    > "$st/$m.yaml" 2> "$st/$m.render.err"
  for block in setup run; do
    "$py" -c "import sys; sys.path.insert(0, '$here'); from node_proof import yaml_block; print(yaml_block(open('$st/$m.yaml').read(), '$block'))" | bash -n
  done
done
git -C "$repo" rev-parse HEAD > "$st/main-commit.txt"
ls -la "$st"

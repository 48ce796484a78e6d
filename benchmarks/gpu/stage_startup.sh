#!/bin/bash
# Fill the checkout's git-ignored .gpu-stage/ for the start-up measurements (node_device.sh lanes): the driver,
# the shapes, the lane queues, and every task of startup/variants.txt exactly as `gptoss-sky up` renders it.
#   stage_startup.sh CHECKOUT PYTHON
set -euo pipefail
repo=$1 py=$2
here=$(cd "$(dirname "$0")" && pwd)
st="$repo/.gpu-stage"
rm -rf "$st" && mkdir -p "$st"
cp "$here/node_proof.py" "$here/node_device.sh" "$here/startup/queue.txt" "$here/startup/lane0.queue" "$here/startup/lane1.queue" "$st/"
cp /work/shared/gpu/gpt-oss-shapes.tar.xz "$st/"
grep -v '^#' "$here/startup/variants.txt" | while read -r name model rest; do
  [ -n "$name" ] || continue
  args=(); eval "args=($rest)"   # the file's own shell quoting
  (cd "$repo" && PYTHONPATH="$repo" "$py" -m launcher.cli up "$model" --gpu H200 --dummy-weights --dryrun "${args[@]}") \
    > "$st/$name.yaml" 2> "$st/$name.render.err"
  for block in setup run; do
    "$py" -c "import sys; sys.path.insert(0, '$here'); from node_proof import yaml_block; print(yaml_block(open('$st/$name.yaml').read(), '$block'))" | bash -n
  done
  grep -o 'cache_restore [^ ]*' "$st/$name.yaml" | sed "s/^/$name: /"
done
git -C "$repo" rev-parse HEAD > "$st/main-commit.txt"
ls -la "$st"

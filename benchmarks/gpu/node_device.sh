#!/bin/bash
# Device-side steps of node_proof.py on a no-network GPU machine (README.md, "Node proof").
# Runs in the repository root of the device's copy; .gpu-stage/ holds node_proof.py, this script,
# the rendered 20b.yaml/120b.yaml, queue.txt and gpt-oss-shapes.tar.xz.
#   node_device.sh stage1          copy chunk a, extract the shapes, start the streaming extractor
#   node_device.sh stage2          copy chunk b
#   node_device.sh stage3 SECONDS  copy chunk c, wait for vLLM, start node_proof.py detached, then poll
#   node_device.sh poll SECONDS    wait until the driver is done or SECONDS pass; pack results into $OUT
#   node_device.sh lanes SECONDS   (in place of stage3) copy chunk c, wait for vLLM, compile its bytecode as
#                                  `uv pip install --compile-bytecode` would, start one driver per GPU
#                                  (lane0.queue, lane1.queue, meeting at a barrier before each step), poll
#   node_device.sh polllanes SECONDS
#   node_device.sh one SECONDS     (one GPU, in place of stage3) as lanes, one driver on queue.txt, the page cache
#                                  dropped before every new-node step; then poll
#   node_device.sh profiles SECONDS RUNS PLAN
#                                  (in place of stage3) copy chunk c, wait for vLLM, start profiles.py detached on
#                                  RUNS (names in commands.txt) with PLAN, then poll (PROFILE_ARGS: more options)
#   node_device.sh tp2 SECONDS     (two GPUs, kind nvidia-h200-x2, in place of stage3) one driver with --gpus 2 on
#                                  .gpu-stage/tp2.queue (stage_tp2.sh), both GPUs visible; then poll (TP2.md)
#   poll and one copy .gpu-stage/queue.txt over the driver's queue first: the driver re-reads it before each
#   step, so a later call can reorder or cut the steps not yet started
set -u
STAGE=/root/stage SITE=/root/site RES=/root/results DRV=/root/drv

put() {  # copy a chunk under a temporary name first: the extractor waits for the final name
  cp ".vllm-stage/$1/part-a$2" "$STAGE/part-a$2.tmp" && mv "$STAGE/part-a$2.tmp" "$STAGE/part-a$2"
}

last_chunk() {  # chunk c, a copy of the repository for the driver, then wait until vLLM is extracted
  put c c || return 1
  rm -rf "$DRV" && mkdir -p "$DRV" && tar --exclude=./.vllm-stage --exclude=./.whl -cf - . | tar -xf - -C "$DRV"
  local t=$SECONDS
  while [ ! -f /root/site.done ] && [ ! -f /root/site.failed ] && [ $((SECONDS - t)) -lt 300 ]; do sleep 1; done
  echo "extraction waited $((SECONDS - t)) s"; cat /root/extract.log; [ -f /root/site.done ]
}

pack() {
  cat "$RES/summary.txt" 2>/dev/null
  tail -n 60 "$RES/driver.log" 2>/dev/null
  nvidia-smi --query-gpu=memory.used --format=csv,noheader
  tar -C "$RES" -cJf "$OUT/results.tar.xz" . && cp "$RES/driver.log" "$OUT/" 2>/dev/null
  ls -la "$OUT"
}

compile_site() {  # as `uv pip install --compile-bytecode` leaves a node's venv
  local t=$SECONDS; python3 -m compileall -q -j 0 "$SITE" > /root/compileall.log 2>&1; echo "compileall $((SECONDS - t)) s rc=$?"
}

poll() {
  [ -f .gpu-stage/queue.txt ] && [ -d "$RES" ] && cp .gpu-stage/queue.txt /root/queue.txt
  local end=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$end" ] && ! grep -q "ALL DONE" "$RES/driver.log" 2>/dev/null; do sleep 3; done
  pack
}

lanes_done() { grep -q "ALL DONE" "$RES/lane0/driver.log" 2>/dev/null && grep -q "ALL DONE" "$RES/lane1/driver.log" 2>/dev/null; }

polllanes() {
  local end=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$end" ] && ! lanes_done; do sleep 3; done
  for l in 0 1; do echo "== lane $l"; cat "$RES/lane$l/summary.txt" 2>/dev/null; tail -n 25 "$RES/lane$l/driver.log" 2>/dev/null; done
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader
  tar -C "$RES" -cJf "$OUT/results.tar.xz" . && ls -la "$OUT"
}

case "$1" in
stage1)
  mkdir -p "$STAGE" "$SITE" "$RES"
  put a a || exit 1
  tar -xJf .gpu-stage/gpt-oss-shapes.tar.xz -C "$STAGE" || exit 1
  # Stream the chunks into tar as each arrives, so extraction overlaps the next transfers.
  # shellcheck disable=SC2016  # $p is the inner bash's
  setsid nohup bash -c 'for p in aa ab ac; do while [ ! -f /root/stage/part-$p ]; do sleep 1; done; cat /root/stage/part-$p; done | tar -xJf - -C /root/site && touch /root/site.done || touch /root/site.failed' > /root/extract.log 2>&1 < /dev/null &
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
  command -v curl python3 bash awk; readlink -f "$(command -v awk)"; awk -W version 2>&1 | head -1; python3 --version; nproc; free -g | head -2; df -h /root | tail -1
  python3 -c 'import importlib
for m in ("click","rich","jinja2","httpx","yaml","openai","prometheus_client","torch","transformers","huggingface_hub"):
    try: print(m, getattr(importlib.import_module(m), "__version__", "?"))
    except Exception as e: print(m, "MISSING", e)'
  ls -la "$STAGE" ;;
stage2)
  put b b && ls -la "$STAGE" && cat /root/extract.log ;;
stage3)
  last_chunk || exit 1
  cp .gpu-stage/queue.txt /root/queue.txt
  cd "$DRV" && PYTHONUNBUFFERED=1 setsid nohup python3 .gpu-stage/node_proof.py --yaml-dir .gpu-stage \
      --stage "$STAGE" --site "$SITE" --out "$RES" --queue /root/queue.txt > "$RES/driver.log" 2>&1 < /dev/null &
  poll "${2:-420}" ;;
poll)
  poll "$2" ;;
one)
  last_chunk || exit 1
  compile_site
  cp .gpu-stage/queue.txt /root/queue.txt && mkdir -p "$RES"
  nvidia-smi -L
  cd "$DRV" && PYTHONUNBUFFERED=1 setsid nohup python3 .gpu-stage/node_proof.py --yaml-dir .gpu-stage \
      --stage "$STAGE" --site "$SITE" --out "$RES" --queue /root/queue.txt --drop-page-cache \
      --prompts "${PROMPTS:-256}" > "$RES/driver.log" 2>&1 < /dev/null &
  poll "${2:-420}" ;;
tp2)
  last_chunk || exit 1
  compile_site
  cp .gpu-stage/tp2.queue /root/queue.txt && mkdir -p "$RES"
  nvidia-smi -L; env | grep -E '^(NCCL_NVLS_ENABLE|TORCH_SYMM_MEM_DISABLE_MULTICAST|NVSHMEM_DISABLE_NVLS)='
  cd "$DRV" && PYTHONUNBUFFERED=1 setsid nohup python3 .gpu-stage/node_proof.py --yaml-dir .gpu-stage \
      --stage "$STAGE" --site "$SITE" --out "$RES" --queue /root/queue.txt --gpus 2 --drop-page-cache \
      --prompts "${PROMPTS:-256}" > "$RES/driver.log" 2>&1 < /dev/null &
  poll "${2:-420}" ;;
profiles)
  last_chunk || exit 1
  compile_site
  mkdir -p "$RES" && nvidia-smi -L
  # shellcheck disable=SC2086  # PROFILE_ARGS is a list of options
  cd "$DRV" && PYTHONPATH="$SITE" PYTHONUNBUFFERED=1 setsid nohup python3 benchmarks/gpu/profiles.py run \
      --only "$3" --plan "$4" --stage "$STAGE" --out "$RES" ${PROFILE_ARGS:-} > "$RES/driver.log" 2>&1 < /dev/null &
  poll "${2:-420}" ;;
lanes)
  last_chunk || exit 1
  compile_site
  nvidia-smi -L
  for l in 0 1; do
    mkdir -p "$RES/lane$l"
    (cd "$DRV" && PYTHONUNBUFFERED=1 setsid nohup python3 .gpu-stage/node_proof.py --yaml-dir .gpu-stage \
      --stage "$STAGE" --site "$SITE" --out "$RES/lane$l" --queue ".gpu-stage/lane$l.queue" --lane "$l" --lanes 2 \
      --barrier /root/barrier --prompts "${PROMPTS:-256}" > "$RES/lane$l/driver.log" 2>&1 < /dev/null &)
  done
  polllanes "${2:-420}" ;;
polllanes)
  polllanes "$2" ;;
esac

set -uo pipefail
phase() { echo "gptoss-sky phase $1 $(date +%s)${2:+ $2}"; }   # progress markers (docs/node-protocol.md)
# shellcheck source=/dev/null  # the venv is created on the node by setup; there is nothing here to follow
source ~/gptoss-sky/vllm-venv/bin/activate
export TIKTOKEN_ENCODINGS_BASE=~/gptoss-sky/tiktoken
export HF_HUB_OFFLINE=1   # everything was fetched in setup; never block on the Hub at start
if [ -z "${VLLM_API_KEY:-}" ]; then echo "gptoss-sky: secret VLLM_API_KEY is empty" >&2; exit 1; fi
# VLLM_API_KEY comes from the SkyPilot secret and stays off every command line (ps): the guard
# (gptoss_guard, written by setup) reads it from the environment and refuses every request without it, on
# every path but /health; the watchdog sends it to /metrics from a 0600 header file (curl -H @file).
export PYTHONPATH=~/gptoss-sky/guard${PYTHONPATH:+:$PYTHONPATH}
export GPTOSS_KEY_ENV=VLLM_API_KEY
mkdir -p ~/gptoss-sky
(umask 077; printf 'Authorization: Bearer %s\n' "$VLLM_API_KEY" > ~/gptoss-sky/auth-header)
# vllm reads VLLM_API_KEY from the environment too.
# The engine's log passes through line by line (bash, not awk: mawk would hold lines back in its input
# buffer), the key masked should it ever appear; the first line matching each pattern of
# catalogs/engines/vllm.yaml (log_phases) prints that phase's marker.
engine_log() {
  local line i now
  local names=( load compile graphs )
  local patterns=( 'Starting to load model' 'Model loading took|Dynamo bytecode transform|for vLLM'"'"'s torch\.compile' 'Profiling CUDA graph memory|Maximum concurrency for|Capturing CUDA graphs|Graph capturing finished' )
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line//"$VLLM_API_KEY"/<key>}
    printf '%s\n' "$line"
    for i in "${!names[@]}"; do
      if [ -n "${patterns[i]}" ] && [[ $line =~ ${patterns[i]} ]]; then
        patterns[i]=""; printf -v now '%(%s)T' -1; echo "gptoss-sky phase ${names[i]} $now"
      fi
    done
  done
}
# --cache: SkyPilot mounts the bucket at /gptoss-cache (GPTOSS_CACHE_DIR overrides it, for tests). Weights are kept
# there as plain files (a bucket has no symlinks), one folder per repo, revision and kind of download.
CACHE=${GPTOSS_CACHE_DIR:-/gptoss-cache}
CACHED_WEIGHTS="$CACHE/weights/models--openai--gpt-oss-20b@6cee5e81ee83917806bbde320786a8fb61efebee-config-only"
SNAPSHOT="${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}/models--openai--gpt-oss-20b/snapshots/6cee5e81ee83917806bbde320786a8fb61efebee"
# A cached folder counts only when its files match the manifest in its .done (sizes and names): a bucket
# mount uploads in the background, so the marker can land before the content it vouches for.
manifest() { (cd "$1" && find -L . -type f ! -name .done -printf '%s %p\n' | LC_ALL=C sort); }
complete() { [ -s "$1/.done" ] && [ "$(manifest "$1")" = "$(cat "$1/.done")" ]; }
# The engine's compile caches (torch.compile, Triton, inductor, FlashInfer) in one local folder, restored
# from the cache before the start when this exact recipe was cached, and saved after the first start.
COMPILED=~/gptoss-sky/compile-cache
export VLLM_CACHE_ROOT="$COMPILED/vllm"
export TRITON_CACHE_DIR="$COMPILED/triton"
export TORCHINDUCTOR_CACHE_DIR="$COMPILED/inductor"
export FLASHINFER_WORKSPACE_BASE="$COMPILED/flashinfer"
cache_restore() {   # $1: the recipe's key (engine version / GPU kind and TP / hash of the command line)
  CACHE_KEY=$1
  if complete "$CACHE/compiled/$CACHE_KEY"; then
    mkdir -p "$COMPILED"; cp -r "$CACHE/compiled/$CACHE_KEY/." "$COMPILED/"; rm -f "$COMPILED/.done"
    echo "gptoss-sky: compiled kernels from the cache ($CACHE_KEY)"
  fi
}
cache_save() {      # after the first successful start: what the cache lacks; content first, manifest last
  if ! complete "$CACHED_WEIGHTS" && [ -d "$SNAPSHOT" ]; then
    mkdir -p "$CACHED_WEIGHTS" && cp -rL "$SNAPSHOT/." "$CACHED_WEIGHTS/" &&
      manifest "$CACHED_WEIGHTS" > "$CACHED_WEIGHTS/.done"
  fi
  if ! complete "$CACHE/compiled/$CACHE_KEY" && [ -d "$COMPILED" ]; then
    mkdir -p "$CACHE/compiled/$CACHE_KEY" && cp -r "$COMPILED/." "$CACHE/compiled/$CACHE_KEY/" &&
      manifest "$CACHE/compiled/$CACHE_KEY" > "$CACHE/compiled/$CACHE_KEY/.done"
  fi
  echo "gptoss-sky: cache up to date ($CACHE_KEY)"
}
SAVING=""
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)
case "$GPU_NAME:$SKYPILOT_NUM_GPUS_PER_NODE" in
  *H200*:1)  # H200:1, max_model_len 131072, 33.01x predicted
    cache_restore vllm-0.32.0/h200-tp1/656d628f09876351
    phase engine_start
    vllm serve openai/gpt-oss-20b --revision 6cee5e81ee83917806bbde320786a8fb61efebee --served-model-name openai/gpt-oss-20b gpt-oss-20b --host 0.0.0.0 --port 8000 --tensor-parallel-size "$SKYPILOT_NUM_GPUS_PER_NODE" --max-model-len 131072 --load-format dummy --tool-call-parser openai --enable-auto-tool-choice --max-cudagraph-capture-size 2048 --max-num-batched-tokens 8192 --stream-interval 20 --middleware gptoss_guard.Guard > >(engine_log) 2>&1 &
    ;;
  *)
    echo "gptoss-sky: no recipe for $SKYPILOT_NUM_GPUS_PER_NODE x '$GPU_NAME' in this task" >&2
    exit 1
    ;;
esac
SERVER=$!   # the engine itself (the log filter is a process substitution, not part of the job)
trap 'kill "$SERVER" 2>/dev/null' TERM INT
# Every few seconds: is the engine still running (its exit ends the loop at once), and until /health
# answers on 127.0.0.1, does it now (then `ready`)? After that the idle watchdog, every 30 s: with
# GPTOSS_IDLE_MINUTES > 0, stop the server after that many minutes without a request, so the job ends and
# SkyPilot's autostop/autodown can release the GPUs. The intervals and the limit in seconds
# (GPTOSS_IDLE_SECONDS) are overridable; the node simulation in the tests shortens them.
IDLE_LIMIT=${GPTOSS_IDLE_SECONDS:-$(( ${GPTOSS_IDLE_MINUTES:-0} * 60 ))}
printf -v now '%(%s)T' -1
ready=""; last_activity=$now; last_check=$now; last_seen=""
while kill -0 "$SERVER" 2>/dev/null; do
  sleep "${GPTOSS_POLL_SECONDS:-2}"
  printf -v now '%(%s)T' -1
  if [ -z "$ready" ]; then
    if curl -sf -o /dev/null http://127.0.0.1:8000/health; then
      ready=1; last_activity=$now; last_check=$now; phase ready
      cache_save & SAVING=$!
    fi
    continue
  fi
  if [ "$IDLE_LIMIT" -le 0 ] || [ $(( now - last_check )) -lt "${GPTOSS_WATCHDOG_POLL_SECONDS:-30}" ]; then
    continue
  fi
  last_check=$now
  seen=$(curl -sf -H @"$HOME/gptoss-sky/auth-header" http://127.0.0.1:8000/metrics | grep -E '^vllm:(request_success_total|num_requests_running|num_requests_waiting)' | awk '{s=s" "$NF} END {print s}')
  if [ -z "$seen" ] || [ "$seen" != "$last_seen" ]; then last_seen=$seen; last_activity=$now; fi
  if [ $(( now - last_activity )) -ge "$IDLE_LIMIT" ]; then
    echo "gptoss-sky: no requests for ${GPTOSS_IDLE_MINUTES} minutes; stopping the server"
    kill "$SERVER"; wait "$SERVER"
    phase engine_exit 0   # stopped on purpose: the job ends cleanly
    exit 0
  fi
done
wait "$SERVER"; code=$?
[ -z "$SAVING" ] || wait "$SAVING"   # let a cache write that is under way finish
phase engine_exit "$code"
exit "$code"

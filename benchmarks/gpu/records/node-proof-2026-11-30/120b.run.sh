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
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)
case "$GPU_NAME:$SKYPILOT_NUM_GPUS_PER_NODE" in
  *H200*:1)  # H200:1, max_model_len 131072, 12.46x predicted
    phase engine_start
    vllm serve openai/gpt-oss-120b --revision b5c939de8f754692c1647ca79fbf85e8c1e70f8a --served-model-name openai/gpt-oss-120b gpt-oss-120b --host 0.0.0.0 --port 8000 --tensor-parallel-size "$SKYPILOT_NUM_GPUS_PER_NODE" --max-model-len 131072 --load-format dummy --tool-call-parser openai --enable-auto-tool-choice --max-cudagraph-capture-size 2048 --max-num-batched-tokens 8192 --stream-interval 20 --middleware gptoss_guard.Guard > >(engine_log) 2>&1 &
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
# SkyPilot's autostop/autodown can release the GPUs. Both intervals are overridable (the tests shorten them).
IDLE_LIMIT=$(( ${GPTOSS_IDLE_MINUTES:-0} * 60 ))
printf -v now '%(%s)T' -1
ready=""; last_activity=$now; last_check=$now; last_seen=""
while kill -0 "$SERVER" 2>/dev/null; do
  sleep "${GPTOSS_POLL_SECONDS:-2}"
  printf -v now '%(%s)T' -1
  if [ -z "$ready" ]; then
    if curl -sf -o /dev/null http://127.0.0.1:8000/health; then
      ready=1; last_activity=$now; last_check=$now; phase ready
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
phase engine_exit "$code"
exit "$code"

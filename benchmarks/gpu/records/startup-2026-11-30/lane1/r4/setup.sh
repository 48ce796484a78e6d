set -euo pipefail
phase() { echo "gptoss-sky phase $1 $(date +%s)"; }   # progress markers for the launcher (docs/node-protocol.md)
phase install
# vllm 0.32.0 into its own venv with uv (seconds, not minutes); skipped when already there.
VENV=~/gptoss-sky/vllm-venv
if ! "$VENV/bin/python" -c "import vllm as m, sys; sys.exit(m.__version__ != '0.32.0')" 2>/dev/null; then
  command -v uv >/dev/null || pip install -q uv || curl -LsSf https://astral.sh/uv/install.sh | sh
  export PATH="$HOME/.local/bin:$PATH"
  uv venv --seed --python 3.12 "$VENV"
  uv pip install --python "$VENV/bin/python" "vllm==0.32.0" "hf_xet" --torch-backend=auto --compile-bytecode
fi
export PATH="$VENV/bin:$PATH"
# The key guard (launcher/guard.py): every path of the public port needs the key, /health excepted.
mkdir -p ~/gptoss-sky/guard
cat > ~/gptoss-sky/guard/gptoss_guard.py <<'GPTOSS_GUARD_PY'
"""gptoss_guard: the key on every route of the engine's public port, /health excepted.

vLLM's --api-key guards only /v1, /v2, /inference and /cohere (/invocations, /tokenize, /metrics... answer
without it); SGLang's leaves /health*, /ready* and /metrics open. This ASGI middleware sits in front of the
whole app: every HTTP request and WebSocket handshake without `Authorization: Bearer <key>` gets 401,
except `GET|HEAD /health` (an empty 200 from the engine, revealing nothing).

Setup writes this file to ~/gptoss-sky/guard/gptoss_guard.py on the node (the text travels inside the
YAML); the run script puts that folder on PYTHONPATH and names the key's environment variable in
GPTOSS_KEY_ENV. vLLM loads it with `--middleware gptoss_guard.Guard`; SGLang (no such flag) is started as
`python -m gptoss_guard sglang.launch_server ...`, which adds it to SGLang's app and then runs SGLang's own
entry point. Standard library only: it runs inside the engine's Python.
"""

from __future__ import annotations

import hmac
import os
import runpy
import sys

OPEN = frozenset({("GET", "/health"), ("HEAD", "/health")})
_BODY = b'{"error": "Unauthorized: send Authorization: Bearer <key>"}'


def _key_from_env() -> str:
    name = os.environ.get("GPTOSS_KEY_ENV", "VLLM_API_KEY")
    key = os.environ.get(name, "")
    if not key:
        raise RuntimeError(f"gptoss_guard: ${name} is empty; refusing to serve without a key")
    return key


class Guard:
    """ASGI middleware: pass a request on only with the key (or to the one open health path)."""

    def __init__(self, app, key: str | None = None):
        self.app = app
        self._key = (key or _key_from_env()).encode()

    def _authorized(self, scope) -> bool:
        for name, value in scope.get("headers") or ():
            if name.lower() == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)
        return False

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):  # lifespan
            return await self.app(scope, receive, send)
        if (kind == "http" and (scope.get("method"), scope.get("path")) in OPEN) or self._authorized(scope):
            return await self.app(scope, receive, send)
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                   (b"content-length", str(len(_BODY)).encode())]
        if kind == "http":
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": _BODY})
        elif "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": _BODY})
        else:  # the server answers a close before accept with 403
            await send({"type": "websocket.close", "code": 1008})


def run_sglang(argv: list[str]) -> None:
    """`python -m gptoss_guard sglang.launch_server ARGS`: SGLang's launcher with the guard on its app."""
    _key_from_env()  # fail before loading a model when the key is missing
    from sglang.srt.entrypoints.http_server import app  # the module-level FastAPI app SGLang serves

    app.add_middleware(Guard)
    module, *args = argv
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    run_sglang(sys.argv[1:])
GPTOSS_GUARD_PY
phase download
# Harmony's tiktoken files, fetched now so the server never downloads them (TIKTOKEN_ENCODINGS_BASE).
mkdir -p ~/gptoss-sky/tiktoken
[ -s ~/gptoss-sky/tiktoken/o200k_base.tiktoken ] || curl -fsSL --retry 5 -o ~/gptoss-sky/tiktoken/o200k_base.tiktoken https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken
[ -s ~/gptoss-sky/tiktoken/cl100k_base.tiktoken ] || curl -fsSL --retry 5 -o ~/gptoss-sky/tiktoken/cl100k_base.tiktoken https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken
# --cache: SkyPilot mounts the bucket at /gptoss-cache (GPTOSS_CACHE_DIR overrides it, for tests). Weights are kept
# there as plain files (a bucket has no symlinks), one folder per repo, revision and kind of download.
CACHE=${GPTOSS_CACHE_DIR:-/gptoss-cache}
CACHED_WEIGHTS="$CACHE/weights/models--openai--gpt-oss-20b@6cee5e81ee83917806bbde320786a8fb61efebee-config-only"
SNAPSHOT="${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}/models--openai--gpt-oss-20b/snapshots/6cee5e81ee83917806bbde320786a8fb61efebee"
# A cached folder counts only when its files match the manifest in its .done (sizes and names): a bucket
# mount uploads in the background, so the marker can land before the content it vouches for.
manifest() { (cd "$1" && find -L . -type f ! -name .done -printf '%s %p\n' | LC_ALL=C sort); }
complete() { [ -s "$1/.done" ] && [ "$(manifest "$1")" = "$(cat "$1/.done")" ]; }
if complete "$CACHED_WEIGHTS"; then
  echo "gptoss-sky: weights from the cache ($CACHED_WEIGHTS)"
  mkdir -p "$SNAPSHOT"; cp -r "$CACHED_WEIGHTS/." "$SNAPSHOT/"; rm -f "$SNAPSHOT/.done"
else
  # --dummy-weights: random weights of the real shapes (--load-format dummy); only config and tokenizer.
  hf download openai/gpt-oss-20b --revision 6cee5e81ee83917806bbde320786a8fb61efebee --include '*.json' --include '*.jinja'
fi
phase setup_done

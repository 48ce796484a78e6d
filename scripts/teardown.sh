#!/usr/bin/env bash
# Tear down every deployment this machine's gptoss-sky recorded (live gptoss-* ones without a record are
# listed, not touched), and the idle SkyServe controller once no service is left. For cron and CI: no
# prompts, non-zero exit on failure.
set -euo pipefail
exec gptoss-sky down --all -y "$@"

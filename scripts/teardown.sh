#!/usr/bin/env bash
# Tear down every cluster and service gptoss-sky launched (names start with "gptoss-"), and the idle
# SkyServe controller once no service is left. For cron and CI: no prompts, non-zero exit on failure.
set -euo pipefail
exec gptoss-sky down --all -y "$@"

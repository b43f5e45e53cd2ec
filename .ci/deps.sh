#!/usr/bin/env bash
# System packages the test suite needs (called by .ci/run).
set -euo pipefail
command -v redis-server >/dev/null || { apt-get update && apt-get install -y redis-server; }

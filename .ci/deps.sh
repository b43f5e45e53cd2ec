#!/usr/bin/env bash
# System packages the test suite needs (called by .ci/run).
set -euo pipefail
command -v redis-server >/dev/null || { apt-get update && apt-get install -y redis-server; }
# PostgreSQL for tests/test_postgres.py (initdb + postgres on a loopback port, started by the test).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update && apt-get install -y postgresql; }
# Debian's Chromium for tests/test_ui.py (Playwright drives it by executable_path; no browser download).
command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }

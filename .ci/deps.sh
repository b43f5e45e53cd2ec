#!/usr/bin/env bash
# System packages the test suite needs (called by .ci/run): redis-server for tests/test_outbox_redis.py and
# PostgreSQL for tests/test_postgres.py (both started by the tests on loopback ports), chromium for
# tests/test_ui.py (Playwright launches it by executable_path; no browser download). Installing them needs
# root: run as root, or as a user with sudo. Without them those tests skip with a reason; nothing fails.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
  echo "deps.sh: installing redis-server, postgresql and chromium needs root or sudo; their tests will skip" >&2; exit 0
fi
need=()
command -v redis-server >/dev/null || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)  # tests/test_ui.py: Playwright drives Debian's chromium
if [ ${#need[@]} -gt 0 ]; then
  "${SUDO[@]}" apt-get update && "${SUDO[@]}" apt-get install -y "${need[@]}"
fi

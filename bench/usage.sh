#!/usr/bin/env bash
# The usage report for a subtree of N customers (default 10,000) on the embedded SQLite database,
# next to /healthz (the constant handler) measured in the same run.
#
#   cargo build --release && bash bench/usage.sh [CUSTOMERS]
#
# Needs wrk (Debian: apt-get install wrk) and python3. Prints wrk's latency distribution for both
# endpoints at 1 connection (the latency one request sees) and at 8 (throughput).
set -euo pipefail
cd "$(dirname "$0")/.."
customers="${1:-10000}"
bin="${CARGO_TARGET_DIR:-target}/release/allot"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d)
trap 'if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
export DATABASE_URL="$work/allot.db" ALLOT_ADMIN_PASSWORD="bench password 123" ALLOT_LOG=warn
port=18080
"$bin" init >/dev/null
"$bin" licence set --starts-on 2026-01-01 --resource "users=$((customers * 100))" --resource "domains=$((customers * 5))" --resource "module:base=$((customers * 100))" >/dev/null
top=$(python3 bench/seed.py --sqlite "$DATABASE_URL" --customers "$customers" 2>&1 >/dev/null | sed -n 's/^top_reseller=//p')
"$bin" verify

ALLOT_LISTEN="127.0.0.1:$port" "$bin" serve &
server=$!
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
token=$(curl -fs "http://127.0.0.1:$port/v1/auth/token" -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$ALLOT_ADMIN_PASSWORD\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
usage="http://127.0.0.1:$port/v1/nodes/$top/usage"
curl -fs "$usage" -H "Authorization: Bearer $token" | head -c 300; echo

for connections in 1 8; do
  echo "== /healthz, $connections connection(s)"
  wrk -t1 -c"$connections" -d10s --latency "http://127.0.0.1:$port/healthz" | sed -n '/Latency Distribution/,/Requests\/sec/p'
  echo "== usage of $customers customers, $connections connection(s)"
  wrk -t1 -c"$connections" -d10s --latency -H "Authorization: Bearer $token" "$usage" | sed -n '/Latency Distribution/,/Requests\/sec/p'
done

#!/usr/bin/env bash
# Bulk import of N mailboxes (default 10,000) as one CSV on the embedded SQLite database: the
# wall time of the request, from curl.
#
#   cargo build --release && bash bench/import.sh [ROWS]
#
# ALLOT_BIN names another binary to measure (a previous build, for a same-run comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000}"
bin="${ALLOT_BIN:-${CARGO_TARGET_DIR:-target}/release/allot}"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
trap 'if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
export DATABASE_URL="$work/allot.db" ALLOT_ADMIN_PASSWORD="bench password 123" ALLOT_LOG=warn
port=18081
"$bin" init >/dev/null
"$bin" licence set --resource "users=$rows" --resource domains=1 --resource "module:base=$rows" >/dev/null
ALLOT_LISTEN="127.0.0.1:$port" "$bin" serve &
server=$!
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
api="http://127.0.0.1:$port"
token=$(curl -fs "$api/v1/auth/token" -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$ALLOT_ADMIN_PASSWORD\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
auth="Authorization: Bearer $token"
owner=$(curl -fs "$api/v1/me" -H "$auth" | sed -E 's/.*"node_id":"([^"]+)".*/\1/')
customer=$(curl -fs "$api/v1/nodes/$owner/children" -H "$auth" -H 'Content-Type: application/json' \
  -d '{"kind":"customer","name":"Import Bench"}' | sed -E 's/^\{"id":"([^"]+)".*/\1/')
for resource in users module:base domains; do
  amount=$([ "$resource" = domains ] && echo 1 || echo "$rows")
  curl -fs "$api/v1/nodes/$customer/allocations" -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"resource\":\"$resource\",\"amount\":$amount}" >/dev/null
done
curl -fs "$api/v1/nodes/$customer/domains" -H "$auth" -H 'Content-Type: application/json' \
  -d '{"name":"import.bench.example"}' >/dev/null
{
  echo "address,display_name,first_name,last_name"
  for i in $(seq 1 "$rows"); do echo "user$i@import.bench.example,User $i,User,Number $i"; done
} > "$work/rows.csv"
echo "== import of $rows rows ($(wc -c < "$work/rows.csv") bytes of CSV), atomic"
curl -fs -o "$work/report.json" -w 'HTTP %{http_code} in %{time_total} s\n' \
  "$api/v1/nodes/$customer/mailboxes/import" -H "$auth" -H 'Content-Type: text/csv' --data-binary "@$work/rows.csv"
sed -E 's/.*"created":([0-9]+),"failed":([0-9]+).*/created \1, failed \2/' "$work/report.json"; echo
echo "== /healthz, for scale"
curl -fs -o /dev/null -w 'HTTP %{http_code} in %{time_total} s\n' "$api/healthz"
kill "$server"; wait "$server" 2>/dev/null || true; server=
"$bin" verify

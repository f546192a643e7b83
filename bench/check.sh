#!/usr/bin/env bash
# The check's hot path: POST /v1/check for a known mailbox next to /healthz (the constant handler)
# in the same run, on a database seeded with N customers (about 42 mailboxes each on average), on
# the embedded SQLite database. Also prints the index's build time at start and the server's
# resident memory.
#
#   cargo build --release && bash bench/check.sh [CUSTOMERS] [CONNECTIONS]
#
# ALLOT_BIN names another binary to measure (a previous build, for a same-run comparison); one
# from before checks took a direction is asked the same question without it.
#
#   bash bench/check.sh 25       # about 1,000 mailboxes
#   bash bench/check.sh 24000    # about 1,000,000 mailboxes
#
# Needs wrk (Debian: apt-get install wrk) and python3. The data is written in SQL by
# bench/seed.py (not through the API); every domain is then marked verified.
set -euo pipefail
cd "$(dirname "$0")/.."
customers="${1:-25}"
connections="${2:-64}"
bin="${ALLOT_BIN:-${CARGO_TARGET_DIR:-target}/release/allot}"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d)
trap 'if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
export DATABASE_URL="$work/allot.db" ALLOT_ADMIN_PASSWORD="bench password 123" ALLOT_LOG=info
port=18081
"$bin" init >/dev/null
"$bin" licence set --starts-on 2026-01-01 --resource "users=$((customers * 100))" --resource "domains=$((customers * 5))" --resource "module:base=$((customers * 100))" >/dev/null
python3 bench/seed.py --sqlite "$DATABASE_URL" --customers "$customers" 2>/dev/null
address=$(python3 - "$DATABASE_URL" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
with db:
    db.execute("UPDATE domains SET verified_at = '2026-01-01 00:00:00'")
print(db.execute("SELECT address FROM mailboxes WHERE origin = 'import' ORDER BY address LIMIT 1").fetchone()[0])
EOF
)
echo "mailboxes: $(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM mailboxes').fetchone()[0])" "$DATABASE_URL")"

ALLOT_LISTEN="127.0.0.1:$port" ALLOT_WORKERS=2 "$bin" serve 2>"$work/serve.log" >&2 &
server=$!
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
grep -o 'check index built.*' "$work/serve.log" || true
token=$(curl -fs "http://127.0.0.1:$port/v1/auth/token" -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$ALLOT_ADMIN_PASSWORD\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
owner=$(curl -fs "http://127.0.0.1:$port/v1/me" -H "Authorization: Bearer $token" | sed -E 's/.*"node_id":"([^"]+)".*/\1/')
key=$(curl -fs "http://127.0.0.1:$port/v1/nodes/$owner/api-keys" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"name": "bench worker", "role": "check"}' |
  sed -E 's/.*"key":"([^"]+)".*/\1/')
# A known sender: the check reads the index and marks the mailbox seen.
body="{\"direction\": \"outbound\", \"address\": \"$address\"}"
curl -fs "http://127.0.0.1:$port/v1/check" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body" >/dev/null ||
  body="{\"address\": \"$address\"}"
echo "check: $(curl -fs "http://127.0.0.1:$port/v1/check" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body")"
cat >"$work/check.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
EOF

for round in 1 2 3; do
  echo "== round $round: /healthz, $connections connections"
  wrk -t2 -c"$connections" -d10s --latency "http://127.0.0.1:$port/healthz" | sed -n '/Latency Distribution/,/Requests\/sec/p'
  echo "== round $round: /v1/check (known mailbox), $connections connections"
  wrk -t2 -c"$connections" -d10s --latency -s "$work/check.lua" "http://127.0.0.1:$port/v1/check" | sed -n '/Latency Distribution/,/Requests\/sec/p'
done
echo "resident memory: $(ps -o rss= -p "$server") KiB"

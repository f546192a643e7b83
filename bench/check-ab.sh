#!/usr/bin/env bash
# Two allot binaries on the same data, asked the check in alternating rounds: what one change costs
# the hot path, measured in one run so that a busy machine slows both alike. Each round loads, one
# binary after the other, POST /v1/check for a known sender with a `check` key (wrk -t2,
# CONNECTIONS connections, 10 s), and /healthz (the constant handler) beside it. ALLOT_LOG=warn:
# what the code costs, not the log writer. With KEY_RATE_LIMIT set, the key is given that budget
# of its own (requests a minute) where the binary knows of one (issue 17's rate limits).
#
#   bash bench/check-ab.sh OLD_BINARY NEW_BINARY [CUSTOMERS] [CONNECTIONS] [ROUNDS]
#
# Needs wrk (Debian: apt-get install wrk) and python3; the data is written by bench/seed.py as in
# bench/check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1"
new="$2"
customers="${3:-25}"
connections="${4:-64}"
rounds="${5:-6}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d)
servers=()
trap 'for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"' EXIT
export DATABASE_URL="$work/allot.db" ALLOT_ADMIN_PASSWORD="bench password 123"
. bench/lib.sh
address=$(seed_database "$old" "$customers")
# The new binary migrates the file further; the old one ignores what it does not know.
"$new" migrate >/dev/null

declare -A port
for which in old new; do
  port[$which]=$([ "$which" = old ] && echo 18091 || echo 18092)
  ALLOT_LOG=warn ALLOT_LISTEN="127.0.0.1:${port[$which]}" ALLOT_WORKERS=2 "${!which}" serve 2>"$work/serve-$which.log" >&2 &
  servers+=("$!")
  wait_for "${port[$which]}"
done

own=""
[ -n "${KEY_RATE_LIMIT:-}" ] && own=", \"rate_limit\": $KEY_RATE_LIMIT"
key=$(check_key "${port[new]}" "$own")
body="{\"direction\": \"outbound\", \"address\": \"$address\"}"
# The old server learns of the new key from the change feed: wait until both answer.
for which in old new; do check_answered "${port[$which]}" "$key" "$body"; done
echo "check: $(curl -fs -D - "http://127.0.0.1:${port[new]}/v1/check" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body" | tr -d '\r' | grep -iE '^(ratelimit|\{)')"
check_script "$work/check.lua" "$key" "$body"

summary() { grep -E ' 50%| 99%|Requests/sec|Non-2xx'; }
for round in $(seq 1 "$rounds"); do
  order="old new"
  [ $((round % 2)) -eq 0 ] && order="new old"
  for which in $order; do
    echo "== round $round, $which: /v1/check (known sender)"
    wrk -t2 -c"$connections" -d10s --latency -s "$work/check.lua" "http://127.0.0.1:${port[$which]}/v1/check" | summary
    echo "== round $round, $which: /healthz"
    wrk -t2 -c"$connections" -d10s --latency "http://127.0.0.1:${port[$which]}/healthz" | summary
  done
done

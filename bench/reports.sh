#!/usr/bin/env bash
# The reports of issue 14 on the embedded SQLite database, under a top reseller holding CUSTOMERS
# customers (default 10,000) over 100 sub-resellers:
#   - the usage history over a year (GET /v1/nodes/{id}/usage/history, from 365 days ago to
#     today): curl RUNS times (median, max), then wrk at 1 connection for 10 s next to /healthz
#     (the constant handler) measured in the same run;
#   - the statistics CSV of every customer (GET /v1/nodes/{id}/statistics.csv), of today (live
#     figures) and of yesterday (read from the history): curl RUNS times;
#   - the audit stream of EVENTS events (default 1,000,000; GET /v1/nodes/{id}/audit with
#     Accept: application/x-ndjson, then text/csv, then NDJSON of the last 30 days only): the
#     server's resident memory before, its peak during (VmHWM, reset through clear_refs before
#     each stream) and after, the time and the lines received.
#
#   cargo build --release && bash bench/reports.sh [CUSTOMERS] [EVENTS] [RUNS]
#
# ALLOT_BIN names another binary to measure. The data is written in SQL, not through the API:
# the tree by bench/seed.py (its allocations starting a year and a day ago), a year of usage
# history (every node, resource and day up to yesterday) and the audit events by
# bench/seed_reports.py; `allot verify` checks the tree before the server starts. The server
# opens today itself (closing yesterday) on the first request, which is timed apart.
#
# Needs wrk (Debian: apt-get install wrk), curl and python3. On a shared machine run it under
# `flock /tmp/bench.lock bash bench/reports.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
customers="${1:-10000}"
events="${2:-1000000}"
runs="${3:-5}"
bin="${ALLOT_BIN:-${CARGO_TARGET_DIR:-target}/release/allot}"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d)
trap 'if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
export DATABASE_URL="$work/allot.db" ALLOT_ADMIN_PASSWORD="bench password 123" ALLOT_LOG=warn
port=18084
today=$(date -u +%F)
yesterday=$(date -u -d "$today -1 day" +%F)
year_ago=$(date -u -d "$today -365 days" +%F)
start=$(date -u -d "$today -366 days" +%F)

echo "== seeding $customers customers, a year of history, $events audit events"
seconds=$SECONDS
"$bin" init >/dev/null
"$bin" licence set --starts-on "$start" --resource "users=$((customers * 100))" --resource "domains=$((customers * 5))" --resource "module:base=$((customers * 100))" >/dev/null
top=$(python3 bench/seed.py --sqlite "$DATABASE_URL" --customers "$customers" --start "$start" 2>&1 >/dev/null | sed -n 's/^top_reseller=//p')
python3 bench/seed_reports.py --sqlite "$DATABASE_URL" --top "$top" --events "$events"
"$bin" verify
python3 - "$DATABASE_URL" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for table in ("nodes", "mailboxes", "usage_history", "active_user_history", "usage_history_days", "audit_events"):
    print(f"{table}: {db.execute(f'SELECT count(*) FROM {table}').fetchone()[0]} rows")
EOF
echo "database: $(du -h "$DATABASE_URL" | cut -f1), seeded in $((SECONDS - seconds)) s"

ALLOT_LISTEN="127.0.0.1:$port" "$bin" serve &
server=$!
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
# A token lives 15 minutes: each part takes a fresh one.
login() {
  token=$(curl -fs "$base/v1/auth/token" -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$ALLOT_ADMIN_PASSWORD\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
}
memory() { awk -v f="$1" '$1 == f":" { printf "%.1f MiB", $2 / 1024 }' "/proc/$server/status"; }

# `timed LABEL URL [curl args]`: RUNS requests one after another; each must answer 200. Prints the
# median and the highest time, and the size of the body.
timed() {
  local label=$1 url=$2
  shift 2
  local times=() out code time size
  for _ in $(seq 1 "$runs"); do
    out=$(curl -sS -o /dev/null -w '%{http_code} %{time_total} %{size_download}' -H "Authorization: Bearer $token" "$@" "$url")
    read -r code time size <<<"$out"
    [ "$code" = 200 ] || { echo "$label: HTTP $code" >&2; exit 1; }
    times+=("$time")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk -v label="$label" -v size="$size" '
    { t[NR] = $1 * 1000 }
    END { printf "%-44s median %8.1f ms   max %8.1f ms   (%d runs, %d bytes)\n", label, (NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2), t[NR], NR, size }'
}

login
history="$base/v1/nodes/$top/usage/history?from=$year_ago&to=$today"
first=$(curl -sS -o "$work/history.json" -w '%{http_code} %{time_total}' -H "Authorization: Bearer $token" "$history")
echo "first request of the day (opens today, closes yesterday): HTTP ${first% *}, $(awk -v t="${first#* }" 'BEGIN { printf "%.1f ms", t * 1000 }')"
python3 - "$work/history.json" <<'EOF'
import json, sys
days = json.load(open(sys.argv[1]))["days"]
last = days[-1]
print(f"history: {len(days)} days, {sum(len(d['resources']) for d in days)} resource-days; today: "
      + ", ".join(f"{r['resource']} {r['used']}/{r['limit']}" for r in last["resources"]))
EOF

echo
echo "== usage history of $customers customers, $year_ago to $today"
timed "/healthz" "$base/healthz"
timed "usage/history (366 days)" "$history"
for url in "$base/healthz" "$history"; do
  echo "-- wrk -t1 -c1 -d10s ${url#"$base"}"
  wrk -t1 -c1 -d10s --latency -H "Authorization: Bearer $token" "$url" | sed -n '/Latency Distribution/,/Requests\/sec/p'
done

echo
echo "== statistics CSV of $customers customers"
login
lines=$(curl -fsS -H "Authorization: Bearer $token" "$base/v1/nodes/$top/statistics.csv" | wc -l)
echo "statistics.csv: $lines lines (a header and one per customer)"
timed "statistics.csv (today, live)" "$base/v1/nodes/$top/statistics.csv"
timed "statistics.csv?at=$yesterday (history)" "$base/v1/nodes/$top/statistics.csv?at=$yesterday"

echo
echo "== audit stream of $events events (the top reseller's subtree)"
audit() {
  local label=$1 accept=$2 url=$3 out
  login
  echo 5 >"/proc/$server/clear_refs" # VmHWM := VmRSS
  local before
  before=$(memory VmRSS)
  out=$(curl -sS -H "Authorization: Bearer $token" -H "Accept: $accept" \
    -w '%{stderr}%{http_code} %{time_total} %{size_download}\n' "$url" 2>"$work/curl" | wc -l)
  local code time size
  read -r code time size <"$work/curl"
  [ "$code" = 200 ] || { echo "$label: HTTP $code" >&2; exit 1; }
  printf '%-28s %8d lines %6d MiB in %6.2f s   RSS before %s, peak %s, after %s\n' \
    "$label" "$out" "$((size / 1048576))" "$time" "$before" "$(memory VmHWM)" "$(memory VmRSS)"
}
audit "NDJSON" application/x-ndjson "$base/v1/nodes/$top/audit"
audit "CSV" text/csv "$base/v1/nodes/$top/audit"
audit "NDJSON, last 30 days" application/x-ndjson "$base/v1/nodes/$top/audit?from=$(date -u -d "$today -30 days" +%F)T00:00:00Z"
audit "NDJSON (again)" application/x-ndjson "$base/v1/nodes/$top/audit"

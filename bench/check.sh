#!/usr/bin/env bash
# The check's hot path, on every listener, next to /healthz (the constant handler) in the same run,
# on a database seeded with N customers (about 42 mailboxes each on average), on the embedded
# SQLite database. Two servers run on the same data, one at the default log level (ALLOT_LOG=info,
# what users get) and one at ALLOT_LOG=warn (what the code costs); rounds alternate between them.
# Each round loads, one at a time:
#   - /healthz and POST /v1/check for a known mailbox, with wrk (-t2, CONNECTIONS connections);
#   - the Postfix policy listener (an RCPT-stage request for the same address) and the socketmap
#     (`mailbox` lookup), with bench/loadgen.rs: CONNECTIONS connections, one request in flight
#     each, as Postfix uses them;
#   - POST /v1/check for an unknown sender at a customer with seats of its own under an oversold
#     reseller whose real seats are all taken (bench/oversold.py): the check walks the customer's
#     lineage and refuses `ancestor_exhausted` (issue 16's use invariant, judged from memory).
# Also prints the index's build time at start and each server's resident memory.
#
#   cargo build --release --bins --examples && bash bench/check.sh [CUSTOMERS] [CONNECTIONS] [ROUNDS]
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
rounds="${3:-3}"
target="${CARGO_TARGET_DIR:-target}/release"
bin="${ALLOT_BIN:-$target/allot}"
loadgen="${ALLOT_LOADGEN:-$target/examples/loadgen}"
[ -x "$bin" ] && [ -x "$loadgen" ] || { echo "build first: cargo build --release --bins --examples" >&2; exit 2; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d)
servers=()
trap 'for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"' EXIT
export DATABASE_URL="$work/allot.db" ALLOT_ADMIN_PASSWORD="bench password 123"
. bench/lib.sh
address=$(seed_database "$bin" "$customers")
# A binary from before overselling cannot build the lineage: its load is then left out.
newcomer=$(oversold_lineage "$bin" 2>"$work/oversold.log") || { newcomer=""; echo "no oversold lineage: $(tail -1 "$work/oversold.log")"; }
echo "mailboxes: $(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM mailboxes').fetchone()[0])" "$DATABASE_URL")"

# One server per log level on the same data: HTTP on 1808x, policy on 1904x, socketmap on 1905x.
declare -A http policy socketmap pid
for level in info warn; do
  n=$([ "$level" = info ] && echo 1 || echo 2)
  http[$level]=1808$n policy[$level]=1904$n socketmap[$level]=1905$n
  ALLOT_LOG=$level ALLOT_LISTEN="127.0.0.1:${http[$level]}" ALLOT_WORKERS=2 \
    ALLOT_POLICY_LISTEN="127.0.0.1:${policy[$level]}" ALLOT_POLICY_DIRECTION=inbound \
    ALLOT_SOCKETMAP_LISTEN="127.0.0.1:${socketmap[$level]}" \
    "$bin" serve 2>"$work/serve-$level.log" >&2 &
  pid[$level]=$!
  servers+=("$!")
  wait_for "${http[$level]}"
done
# The index is built in the background once the server listens: its line (at `info` only).
for _ in $(seq 1 600); do grep -q 'check index built' "$work/serve-info.log" && break; sleep 0.1; done
echo "$(grep -o 'check index built.*' "$work/serve-info.log" || true)"

port=${http[warn]}
key=$(check_key "$port")
# A known sender: the check reads the index and marks the mailbox seen. The other server learns
# of the new key from the change feed: wait until both answer.
body="{\"direction\": \"outbound\", \"address\": \"$address\"}"
curl -fs "http://127.0.0.1:$port/v1/check" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body" >/dev/null ||
  body="{\"address\": \"$address\"}"
for level in info warn; do check_answered "${http[$level]}" "$key" "$body"; done
echo "check: $(curl -fs "http://127.0.0.1:$port/v1/check" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body")"
check_script "$work/check.lua" "$key" "$body"
if [ -n "$newcomer" ]; then
  lineage_body="{\"direction\": \"outbound\", \"address\": \"$newcomer\"}"
  echo "lineage: $(curl -fs "http://127.0.0.1:$port/v1/check" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$lineage_body")"
  check_script "$work/lineage.lua" "$key" "$lineage_body"
fi

summary() { sed -n '/Latency Distribution/,/Requests\/sec/p' | grep -E ' 50%| 99%|Requests/sec|not accepted'; }
# One load at one level, for 10 s, with its command printed; wrk's or loadgen's summary follows.
load() {
  local what=$1 level=$2
  case $what in
    healthz) wrk -t2 -c"$connections" -d10s --latency "http://127.0.0.1:${http[$level]}/healthz" ;;
    check) wrk -t2 -c"$connections" -d10s --latency -s "$work/check.lua" "http://127.0.0.1:${http[$level]}/v1/check" ;;
    lineage) wrk -t2 -c"$connections" -d10s --latency -s "$work/lineage.lua" "http://127.0.0.1:${http[$level]}/v1/check" ;;
    policy) "$loadgen" policy "127.0.0.1:${policy[$level]}" "$address" "$connections" 10 2 ;;
    socketmap) "$loadgen" socketmap "127.0.0.1:${socketmap[$level]}" "$address" "$connections" 10 2 ;;
  esac
}
# ALLOT_PROFILE=healthz|check|lineage|policy|socketmap (ALLOT_PROFILE_LEVEL=warn|info, default warn):
# instead of the rounds, record that load's profile on the server (perf, Debian's linux-perf;
# a build with line tables, CARGO_PROFILE_RELEASE_DEBUG=line-tables-only, names the frames) and
# print its top frames, self time, by symbol and by shared object.
if [ -n "${ALLOT_PROFILE:-}" ]; then
  level=${ALLOT_PROFILE_LEVEL:-warn}
  load "$ALLOT_PROFILE" "$level" >/dev/null # warm-up
  perf record -F 1999 -g -o "$work/perf.data" -p "${pid[$level]}" -- sleep 8 2>/dev/null &
  recorder=$!
  load "$ALLOT_PROFILE" "$level" | summary
  wait "$recorder"
  perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E "^ +[0-9]" | sed -E "s/ +/ /g; s/ - - *$//" | head -8
  perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -E "^ +[0-9]" | sed -E "s/ +/ /g; s/ - - *$//" | head -"${ALLOT_PROFILE_TOP:-40}"
  exit 0
fi
for round in $(seq 1 "$rounds"); do
  for level in info warn; do
    echo "== round $round, ALLOT_LOG=$level: /healthz"
    load healthz "$level" | summary
    echo "== round $round, ALLOT_LOG=$level: /v1/check (known mailbox)"
    load check "$level" | summary
    if [ -n "$newcomer" ]; then
      echo "== round $round, ALLOT_LOG=$level: /v1/check (unknown sender, lineage walked, ancestor_exhausted)"
      load lineage "$level" | summary
    fi
    echo "== round $round, ALLOT_LOG=$level: policy listener (RCPT, known recipient)"
    load policy "$level" | summary
    echo "== round $round, ALLOT_LOG=$level: socketmap (mailbox lookup, known)"
    load socketmap "$level" | summary
  done
done
for level in info warn; do
  echo "resident memory, ALLOT_LOG=$level: $(ps -o rss= -p "${pid[$level]}") KiB"
done

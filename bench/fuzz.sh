#!/usr/bin/env bash
# Every fuzz harness for a time budget, one after the other, each printing its executions:
# tests/fuzz.rs (the parsers), tests/api/fuzz.rs (through HTTP, SQLite unless
# ALLOT_TEST_DATABASE_URL names a PostgreSQL server) and the policy listener's line reader
# (src/check/postfix.rs, run again and again with a fresh seed until its budget is spent).
#
#   bash bench/fuzz.sh [SECONDS_PER_HARNESS]     # default 60
#
# PROPTEST_CASES sets the cases of one run inside the budget (default 1000). A finding fails the
# harness with its minimal input; its seed is kept in proptest-regressions/ and replayed first on
# every later run. Turn each into a named regression test next to the code it found wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
export PROPTEST_CASES="${PROPTEST_CASES:-1000}" ALLOT_FUZZ_SECONDS="$seconds"
cargo test -q --test fuzz --test api --lib --no-run 2>/dev/null
echo "fuzz: ${seconds} s per harness, ${PROPTEST_CASES} cases per run, $(nproc) cores, $(date -u +%Y-%m-%d)"
status=0
report() { grep -oE 'fuzz [^:]+: [0-9]+ .*|panicked.*|minimal failing input.*|test result: FAILED.*' || true; }
cargo test -q --test fuzz -- --test-threads=1 --nocapture 2>&1 | report || status=1
cargo test -q --test api fuzz_http -- --nocapture 2>&1 | report || status=1
for harness in fuzz_policy_reader_arbitrary_bytes fuzz_policy_reader_reassembles_requests; do
  start=$(date +%s.%N) runs=0
  while :; do
    if ! out=$(cargo test -q --lib "$harness" 2>&1); then
      echo "$out" | report
      status=1
      break
    fi
    runs=$((runs + 1))
    elapsed=$(echo "$(date +%s.%N) - $start" | bc)
    if [ "$(echo "$elapsed >= $seconds" | bc)" = 1 ]; then break; fi
  done
  echo "fuzz $harness: $((runs * PROPTEST_CASES)) cases in $runs run(s) of $PROPTEST_CASES cases, ${elapsed%.*} s"
done
exit "$status"

#!/usr/bin/env bash
# The crash test: write load on a fresh database, the server killed with SIGKILL at random moments
# and restarted, then every acknowledged write read back through the API and `allot verify` run.
#
#   cargo build --release && bash bench/crash.sh [sqlite|postgres] [KILLS]
#
# postgres uses the server at ALLOT_CRASH_PG (default postgres://postgres@127.0.0.1:5432): a new
# database is created on it for the run and dropped at the end; the server itself is never
# touched. ALLOT_BIN names another binary; ALLOT_CRASH_THREADS the writing threads (default 8);
# ALLOT_CRASH_PLANT=1 counts one write as acknowledged that never happened, so the run must FAIL
# (a check of the checker).
# Needs python3 (standard library only) and, for postgres, psql.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
kills="${2:-10}"
bin="${ALLOT_BIN:-${CARGO_TARGET_DIR:-target}/release/allot}"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
port="${ALLOT_CRASH_PORT:-18083}"

work=$(mktemp -d)
pg_server="${ALLOT_CRASH_PG:-postgres://postgres@127.0.0.1:5432}"
pg_db=""
cleanup() {
  if [ -n "$pg_db" ]; then
    psql "$pg_server/postgres" -qc "DROP DATABASE IF EXISTS \"$pg_db\" WITH (FORCE)" >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

case "$backend" in
  sqlite) export DATABASE_URL="$work/allot.db" ;;
  postgres)
    command -v psql >/dev/null || { echo "needs psql" >&2; exit 2; }
    pg_db="allot_crash_$(date +%s)_$$"
    psql "$pg_server/postgres" -qc "CREATE DATABASE \"$pg_db\"" >/dev/null
    export DATABASE_URL="$pg_server/$pg_db"
    ;;
  *) echo "usage: bench/crash.sh [sqlite|postgres] [KILLS]" >&2; exit 2 ;;
esac

# A fixed signing key, so that the load's token outlives the restarts; and the key stored secrets
# are sealed with, which PostgreSQL requires (SQLite would make one beside the database).
random_key() { python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'; }
export ALLOT_ADMIN_PASSWORD="crash test password" ALLOT_LOG=warn \
  ALLOT_JWT_SECRET="$(random_key)" ALLOT_SECRET_KEY="$(random_key)"
"$bin" init >/dev/null
"$bin" licence set --resource "users=1000000" --resource "module:base=1000000" --resource "domains=100" >/dev/null

echo "backend: $backend ($("$bin" --version 2>/dev/null || echo allot)), $(nproc) cores, $(date -u +%Y-%m-%d)"
python3 bench/crash.py --bin "$bin" --port "$port" --kills "$kills" \
  --threads "${ALLOT_CRASH_THREADS:-8}" --log "$work/serve.log" ${ALLOT_CRASH_SEED:+--seed "$ALLOT_CRASH_SEED"} \
  ${ALLOT_CRASH_PLANT:+--plant-missing} ||
  { status=$?; echo "server log (last 30 lines):"; tail -30 "$work/serve.log"; exit "$status"; }

# The steps the bench scripts share, sourced by them (not run): the seeded data, waiting for a
# server, an admin's token and a `check` key. The caller sets `work` (a scratch directory) and
# exports DATABASE_URL and ALLOT_ADMIN_PASSWORD first.

# seed_database BIN CUSTOMERS: initialises the database with BIN, gives the owner a licence large
# enough for CUSTOMERS customers (about 42 mailboxes each on average) and a few seats to spare for
# bench/oversold.py's lineage, writes them in SQL with
# bench/seed.py (not through the API; its report goes to $work/seed.log), marks every domain
# verified, fills the address keys the API would have written (`allot migrate`'s data step, once
# here rather than inside the first server measured), and prints one imported mailbox's address:
# the known address the loads ask about.
seed_database() {
  local bin=$1 customers=$2
  "$bin" init >/dev/null
  "$bin" licence set --starts-on 2026-01-01 --resource "users=$((customers * 100 + 10))" \
    --resource "domains=$((customers * 5 + 4))" --resource "module:base=$((customers * 100 + 10))" >/dev/null
  python3 bench/seed.py --sqlite "$DATABASE_URL" --customers "$customers" 2>"$work/seed.log"
  python3 - "$DATABASE_URL" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
with db:
    db.execute("UPDATE domains SET verified_at = '2026-01-01 00:00:00'")
print(db.execute("SELECT address FROM mailboxes WHERE origin = 'import' ORDER BY address LIMIT 1").fetchone()[0])
PY
  "$bin" migrate >/dev/null 2>&1
}

# wait_for PORT: until the server on 127.0.0.1:PORT answers /healthz (a minute at most).
wait_for() {
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$1/healthz" >/dev/null && return 0
    sleep 0.1
  done
  echo "the server on port $1 did not start" >&2
  return 1
}

# admin_token PORT: an access token of the first admin.
admin_token() {
  curl -fs "http://127.0.0.1:$1/v1/auth/token" -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$ALLOT_ADMIN_PASSWORD\"}" |
    sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

# check_key PORT [EXTRA]: a new `check` API key of the owner; EXTRA is more of its JSON body
# (`, "rate_limit": 1000`).
check_key() {
  local port=$1 extra=${2:-} token owner
  token=$(admin_token "$port")
  owner=$(curl -fs "http://127.0.0.1:$port/v1/me" -H "Authorization: Bearer $token" |
    sed -E 's/.*"node_id":"([^"]+)".*/\1/')
  curl -fs "http://127.0.0.1:$port/v1/nodes/$owner/api-keys" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d "{\"name\": \"bench worker\", \"role\": \"check\"$extra}" |
    sed -E 's/.*"key":"([^"]+)".*/\1/'
}

# check_answered PORT KEY BODY: until POST /v1/check on PORT answers KEY (a server learns of a key
# made at another from the change feed), ten seconds at most.
check_answered() {
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$1/v1/check" -H "Authorization: Bearer $2" \
      -H 'Content-Type: application/json' -d "$3" >/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# check_script FILE KEY BODY: the wrk script that POSTs BODY to /v1/check with KEY.
check_script() {
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '$3'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $2"
LUA
}

# oversold_lineage BIN: builds bench/oversold.py's lineage through the API of a server of BIN started
# for it alone (the seeded database must be in place and no other server running on it), marks its
# domains verified, and prints the unknown sender whose check walks that lineage to be refused.
oversold_lineage() {
  local bin=$1 server sender
  ALLOT_LOG=warn ALLOT_LISTEN="127.0.0.1:18099" ALLOT_REQUIRE_DOMAIN_VERIFICATION=false \
    "$bin" serve 2>"$work/serve-setup.log" >&2 &
  server=$!
  wait_for 18099
  sender=$(python3 bench/oversold.py 18099 "$ALLOT_ADMIN_PASSWORD") || { kill "$server"; return 1; }
  kill "$server"
  wait "$server" 2>/dev/null || true
  python3 -c "import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); db.execute(\"UPDATE domains SET verified_at = '2026-01-01 00:00:00' WHERE verified_at IS NULL\"); db.commit()" "$DATABASE_URL"
  echo "$sender"
}

# Shared helpers for the benchmark scripts: a throwaway PostgreSQL cluster, run as the
# `postgres` user when the script runs as root (initdb refuses root).
# Sourced, not run.

set -euo pipefail

BENCH_DIR=$(mktemp -d /tmp/pgseal-bench-XXXXXX)
chmod 755 "$BENCH_DIR"

pg_bin_dir() {
  local initdb
  initdb=$(command -v initdb || true)
  if [ -n "$initdb" ] && [ -x "$(dirname "$(readlink -f "$initdb")")/postgres" ]; then
    dirname "$(readlink -f "$initdb")"
    return
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ]; then
    echo "no PostgreSQL server binaries found: apt-get install -y postgresql" >&2
    exit 1
  fi
  echo "$dir"
}

PG_BIN=$(pg_bin_dir)

as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# bouncer_ini NAME PORT HOST: writes $BENCH_DIR/NAME.ini, a session-pooling PgBouncer listening
# on 127.0.0.1:PORT for the `bench` database of the cluster on $PG_PORT, reached at HOST (an
# address or the socket directory); its log and pid file beside it.
bouncer_ini() {
  cat >"$BENCH_DIR/$1.ini" <<INI
[databases]
bench = host=$3 port=$PG_PORT dbname=bench user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir =
auth_type = any
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = $BENCH_DIR/$1.log
pidfile = $BENCH_DIR/$1.pid
INI
  chmod 644 "$BENCH_DIR/$1.ini"
}

# start_cluster PORT: initdb + start with trust on loopback (benchmarks measure the data path,
# not authentication). PG_SHARED_BUFFERS sets the server's shared_buffers (default 256MB).
start_cluster() {
  local port=$1
  mkdir -p "$BENCH_DIR/data" "$BENCH_DIR/run"
  [ "$(id -u)" = 0 ] && chown postgres: "$BENCH_DIR/data" "$BENCH_DIR/run"
  as_server_user "$PG_BIN/initdb" -D "$BENCH_DIR/data" -U postgres -A trust --no-sync >/dev/null
  as_server_user "$PG_BIN/pg_ctl" -D "$BENCH_DIR/data" -l "$BENCH_DIR/run/postgres.log" -w start \
    -o "-p $port -k $BENCH_DIR/run -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=${PG_SHARED_BUFFERS:-256MB} -c fsync=off -c synchronous_commit=off" >/dev/null
}

# hospital_database PORT: start_cluster, then a database `ehr` with the hospital example's
# schema; sets PSQL (psql on it, as an array) and URL (its postgres:// URL).
hospital_database() {
  start_cluster "$1"
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$1" -U postgres ehr
  PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d ehr)
  "${PSQL[@]}" -f policies/examples/hospital.sql >/dev/null
  URL="postgres://postgres@127.0.0.1:$1/ehr"
}

stop_cluster() {
  as_server_user "$PG_BIN/pg_ctl" -D "$BENCH_DIR/data" -m fast stop >/dev/null 2>&1 || true
}

# PIDS: the processes a script started (pgseal, mostly). bench_cleanup, its EXIT trap, stops
# them and the cluster, and removes $BENCH_DIR.
PIDS=()
bench_cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_cluster
  rm -rf "$BENCH_DIR"
}

wait_port() {
  local port=$1
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $port" >&2
  return 1
}

# hospital_policy_unbudgeted OUT: the hospital policy with the application's budget lifted
# (rate, burst, hourly and daily caps): benchmarks measure sealing and evaluation, and each
# reads or writes more rows than a real hour of the application would.
hospital_policy_unbudgeted() {
  sed -e 's/^per_hour = 500_000$/per_hour = 1_000_000_000/' \
    -e 's/^per_day = 5_000_000$/per_day = 1_000_000_000/' \
    -e 's/^rate = "2000\/second"$/rate = "10000000\/second"/' \
    -e 's/^burst = 20_000$/burst = 10_000_000/' \
    policies/examples/hospital.toml >"$1"
  grep -q '^per_hour = 1_000_000_000$' "$1" && grep -q '^burst = 10_000_000$' "$1"
}

# hospital_policy_indexed OUT: the unbudgeted hospital policy with search indexes (issue 15) on
# six patient columns, as the tests' `indexed_policy` (tests/src/hospital.rs, INDEXED_COLUMNS)
# writes it: each column's `mode = …` line becomes `mode = "randomized"` plus its `search` line
# (search indexes are refused on deterministic columns). A column whose section already
# declares a search index (first_name, in the example) keeps it.
hospital_policy_indexed() {
  hospital_policy_unbudgeted "$1.unbudgeted"
  python3 - "$1.unbudgeted" "$1" <<'PY'
import re
import sys
columns = [
    ("last_name", '{ prefix = 4, trigram = true, exact = true }'),
    ("first_name", '{ prefix = 4, exact = true }'),
    ("birth_date", '{ exact = true, date = "month" }'),
    ("email", '{ trigram = true, exact = true }'),
    ("phone", '{ trigram = true }'),
    ("address", '{ trigram = true, bits = 10 }'),
]
text = open(sys.argv[1]).read()
for column, search in columns:
    header = f'[columns."public.patients.{column}"]\n'
    at = text.index(header) + len(header)
    section_end = text.find("\n[", at)
    section = text[at:section_end if section_end >= 0 else len(text)]
    if re.search(r"^search = ", section, re.M):
        assert re.search(r'^mode = "randomized"', section, re.M), column
        continue
    end = text.index("\n", at)
    assert text[at:end].startswith("mode = "), f"{column}'s first line is not its mode"
    text = text[:at] + f'mode = "randomized"\nsearch = {search}' + text[end:]
open(sys.argv[2], "w").write(text)
PY
  rm -f "$1.unbudgeted"
  [ "$(grep -c '^search = ' "$1")" = 6 ]
}

# pgbench_beside_hospital SCALE PGSEAL: on the cluster at $PG_PORT, a database `bench` with
# pgbench's tables at SCALE and the hospital example's beside them, a new keyring and the
# unbudgeted hospital policy in $BENCH_DIR (keyring.toml, hospital.toml): pgbench's statements
# touch no sealed table.
pgbench_beside_hospital() {
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres bench
  pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s "$1" -q bench >/dev/null 2>&1
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bench \
    -f policies/examples/hospital.sql >/dev/null
  "$2" keys generate --out "$BENCH_DIR/keyring.toml" >/dev/null
  hospital_policy_unbudgeted "$BENCH_DIR/hospital.toml"
}

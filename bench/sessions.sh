#!/usr/bin/env bash
# Memory under many sessions (issue 19): pgseal (no policy) in front of a throwaway PostgreSQL,
# CLIENTS pgbench clients at once running -S for SECONDS; prints pgseal's resident memory
# before, its peak (VmHWM) and its memory per session, with the TPS, and the same through
# PgBouncer for comparison.
#
#   bash bench/sessions.sh [CLIENTS] [SECONDS]
#
# A benchmark, not a test: run it on an otherwise idle machine. Needs PostgreSQL server
# binaries, pgbench and pgbouncer.

set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

CLIENTS=${1:-400}
SECONDS_PER_RUN=${2:-15}
cargo build --release -q -p pgseal
PGSEAL=$PWD/target/release/pgseal

PG_PORT=$(free_port)
SEAL_PORT=$(free_port)
BOUNCER_PORT=$(free_port)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$BENCH_DIR/pgbouncer.pid" ] && kill "$(cat "$BENCH_DIR/pgbouncer.pid")" 2>/dev/null || true
  stop_cluster
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

start_cluster "$PG_PORT"
# Room for every client, through either proxy.
as_server_user "$PG_BIN/pg_ctl" -D "$BENCH_DIR/data" -l "$BENCH_DIR/run/postgres.log" -w restart \
  -o "-p $PG_PORT -k $BENCH_DIR/run -c listen_addresses=127.0.0.1 -c max_connections=$((CLIENTS + 20)) -c shared_buffers=256MB -c fsync=off" >/dev/null
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres bench
pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 10 -q bench >/dev/null 2>&1

"$PGSEAL" serve --listen "127.0.0.1:$SEAL_PORT" --upstream "127.0.0.1:$PG_PORT" --log-level warn \
  --max-connections $((CLIENTS + 10)) 2>"$BENCH_DIR/pgseal.log" &
SEAL_PID=$!
PIDS+=("$SEAL_PID")
cat >"$BENCH_DIR/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = any
pool_mode = session
max_client_conn = $((CLIENTS + 10))
default_pool_size = $((CLIENTS + 10))
logfile = $BENCH_DIR/pgbouncer.log
pidfile = $BENCH_DIR/pgbouncer.pid
INI
chmod 644 "$BENCH_DIR/pgbouncer.ini"
[ "$(id -u)" = 0 ] && chown postgres: "$BENCH_DIR"
as_server_user pgbouncer -q "$BENCH_DIR/pgbouncer.ini" &
PIDS+=($!)
wait_port "$SEAL_PORT"
wait_port "$BOUNCER_PORT"
BOUNCER_PID=$(cat "$BENCH_DIR/pgbouncer.pid")

kib() { awk -v f="$2" '$1 == f":" {print $2}' "/proc/$1/status"; }
printf '%-10s %8s %12s %12s %14s %10s\n' proxy clients "RSS before" "peak RSS" "per session" TPS
for target in pgseal pgbouncer; do
  if [ "$target" = pgseal ]; then pid=$SEAL_PID port=$SEAL_PORT; else pid=$BOUNCER_PID port=$BOUNCER_PORT; fi
  before=$(kib "$pid" VmRSS)
  out=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -S -n -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" bench 2>&1) \
    || { echo "pgbench through $target failed: $out" >&2; exit 1; }
  peak=$(kib "$pid" VmHWM)
  tps=$(awk '/^tps = / {print $3}' <<<"$out")
  awk -v t="$target" -v c="$CLIENTS" -v b="$before" -v p="$peak" -v tps="$tps" 'BEGIN {
    printf "%-10s %8d %9.1f MiB %9.1f MiB %11.1f KiB %10.0f\n", t, c, b/1024, p/1024, (p-b)/c, tps }'
done
echo "$CLIENTS clients for ${SECONDS_PER_RUN}s; pgbench -S, scale 10; $(nproc) cores; $(date -u +%F)"

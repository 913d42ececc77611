#!/usr/bin/env bash
# Instructions per transaction: pgseal's user-space instructions for each pgbench -S transaction,
# counted by valgrind's callgrind, with and without the hospital policy, in the simple and the
# prepared protocol (1 client), and PgBouncer's (session pooling) beside them. Unlike CPU time
# read from /proc, the count does not move with the machine's load or the scheduler, so a change
# of a few hundred instructions on the path of every statement shows (issue 19: what a policy
# costs statements that touch no sealed table, and the relay against PgBouncer). Both relays
# make the same system calls per transaction (strace -c), so the kernel's share, which
# callgrind does not count, is the same for both.
#
#   bash bench/instructions.sh [TRANSACTIONS]
#
# PGSEAL_BIN=/path/to/pgseal measures another build (default: target/release/pgseal, built
# here). KEEP=DIR keeps the callgrind profiles in DIR (read them with callgrind_annotate).
# CALLGRIND_OPTS adds options to callgrind's, e.g. "--cache-sim=yes" to count simulated cache
# misses beside the instructions (how much memory each transaction touches).
#
# Needs: PostgreSQL server binaries, pgbench, pgbouncer, valgrind
# (apt-get install -y postgresql pgbouncer valgrind).
# pgseal runs about 50 times slower under callgrind: the TPS it prints means nothing.

set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

TRANSACTIONS=${1:-3000}
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install -y valgrind" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench missing: apt-get install -y postgresql-contrib" >&2; exit 1; }
command -v pgbouncer >/dev/null || { echo "pgbouncer missing: apt-get install -y pgbouncer" >&2; exit 1; }
if [ -z "${PGSEAL_BIN:-}" ]; then
  cargo build --release -q -p pgseal
  PGSEAL_BIN=$PWD/target/release/pgseal
fi
OUT_DIR=${KEEP:-$BENCH_DIR/profiles}
mkdir -p "$OUT_DIR"

PG_PORT=$(free_port)
SEAL_PID=
cleanup() {
  [ -n "$SEAL_PID" ] && kill "$SEAL_PID" 2>/dev/null || true
  stop_cluster
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

start_cluster "$PG_PORT"
pgbench_beside_hospital 1 "$PGSEAL_BIN"

# count NAME MODE [pgseal options…]: instructions per transaction of pgseal serving pgbench
# (of PgBouncer when NAME is pgbouncer).
count() {
  local name=$1 mode=$2 port profile
  shift 2
  port=$(free_port)
  profile="$OUT_DIR/$name-$mode.callgrind"
  if [ "$name" = pgbouncer ]; then
    # PgBouncer runs as the server's user, which then owns its profile.
    bouncer_ini "$name" "$port" 127.0.0.1
    # shellcheck disable=SC2086 # CALLGRIND_OPTS holds several options.
    as_server_user valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$profile" \
      ${CALLGRIND_OPTS:-} pgbouncer -q "$BENCH_DIR/$name.ini" 2>"$BENCH_DIR/$name-$mode.log" &
  else
    # shellcheck disable=SC2086 # CALLGRIND_OPTS holds several options.
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$profile" \
      ${CALLGRIND_OPTS:-} "$PGSEAL_BIN" serve --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PG_PORT" \
      --log-level warn "$@" 2>"$BENCH_DIR/$name-$mode.log" &
  fi
  SEAL_PID=$!
  # Valgrind starts slowly: up to a minute.
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  wait_port "$port"
  # Warm up (catalog load, remembered shapes, prepared statements), then count.
  pgbench -h 127.0.0.1 -p "$port" -U postgres -S -n -M "$mode" -c 1 -j 1 -t 200 bench >/dev/null
  # The valgrind process itself (under runuser for PgBouncer), asked as its own user.
  local target
  target=$(pgrep -f -n "callgrind-out-file=$profile" | head -n 1)
  control() { if [ "$name" = pgbouncer ]; then as_server_user callgrind_control "$@"; else callgrind_control "$@"; fi; }
  control -i on "$target" >/dev/null 2>&1
  pgbench -h 127.0.0.1 -p "$port" -U postgres -S -n -M "$mode" -c 1 -j 1 -t "$TRANSACTIONS" \
    bench >/dev/null
  control -i off "$target" >/dev/null 2>&1
  control -d "$target" >/dev/null 2>&1
  kill "$target" "$SEAL_PID" 2>/dev/null || true
  wait "$SEAL_PID" 2>/dev/null || true
  SEAL_PID=
  # The dump asked for is the file's first numbered part.
  awk -v n="$TRANSACTIONS" '/^totals:/ { printf "%.0f", $2 / n; exit }' "$profile.1"
}

[ "$(id -u)" = 0 ] && chown postgres: "$BENCH_DIR" "$OUT_DIR"
printf '%-9s %16s %16s %7s %16s %12s\n' mode "no policy Ir/tx" "policy Ir/tx" ratio \
  "PgBouncer Ir/tx" "pgseal/PgB"
for mode in simple prepared; do
  plain=$(count plain "$mode")
  policy=$(count policy "$mode" --policy "$BENCH_DIR/hospital.toml" --keyring "$BENCH_DIR/keyring.toml")
  bounced=$(count pgbouncer "$mode")
  awk -v m="$mode" -v p="$plain" -v q="$policy" -v b="$bounced" \
    'BEGIN { printf "%-9s %16d %16d %7.2f %16d %12.2f\n", m, p, q, q / p, b, p / b }'
done

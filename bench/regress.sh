#!/usr/bin/env bash
# PostgreSQL's own regression suite through pgseal (issue 19: nothing regresses): pg_regress's
# parallel schedule run three times against one throwaway cluster — directly, through pgseal
# without a policy, and through pgseal with the hospital policy (the protected path: its
# filters see every statement, none of which touches a sealed table) — and each test's outcome
# compared with the direct run's. A test that fails directly (the suite expects things a
# packaged server does not give: the C functions of regress.so, which this script does not
# build, and what depends on them) must fail the same way through pgseal; any other difference
# is listed with its diff.
#
#   bash bench/regress.sh [SOURCE]
#
# SOURCE is a PostgreSQL source tree or tarball (postgresql-X.Y.tar.bz2, or Debian's
# .orig.tar.bz2) of the server's major version; without it the script fetches the server's own
# source with `apt-get source` (needs a deb-src line for the Debian archive). PGSEAL_BIN=path
# uses that pgseal instead of building; KEEP=dir keeps the three runs' results and diffs.
#
# A verification, not a timed benchmark: it prints the suite's wall time on each path, for
# scale only. Needs PostgreSQL server binaries with pg_regress (the Debian packages ship it in
# lib/pgxs) and psql.

set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

if [ -z "${PGSEAL_BIN:-}" ]; then
  cargo build --release -q -p pgseal
  PGSEAL_BIN=$PWD/target/release/pgseal
fi
PG_REGRESS="$PG_BIN/../lib/pgxs/src/test/regress/pg_regress"
[ -x "$PG_REGRESS" ] || { echo "pg_regress not found at $PG_REGRESS" >&2; exit 1; }
MAJOR=$("$PG_BIN/postgres" --version | awk '{print $3}' | cut -d. -f1)

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_cluster
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

# The suite: src/test/regress of the given source, or of the server's Debian source package.
SOURCE=${1:-}
if [ -z "$SOURCE" ]; then
  version=$(dpkg-query -W -f '${Version}' "postgresql-$MAJOR")
  (cd "$BENCH_DIR" && apt-get source --download-only "postgresql-$MAJOR=$version" >/dev/null) || {
    echo "could not fetch postgresql-$MAJOR's source: pass a source tree or tarball" >&2
    exit 1
  }
  SOURCE=$(ls "$BENCH_DIR"/postgresql-"$MAJOR"_*.orig.tar.*)
fi
if [ -d "$SOURCE" ]; then
  SUITE=$SOURCE/src/test/regress
else
  tar -xf "$SOURCE" -C "$BENCH_DIR" --wildcards '*/src/test/regress'
  SUITE=$(ls -d "$BENCH_DIR"/postgresql-*/src/test/regress)
fi
[ -f "$SUITE/parallel_schedule" ] || { echo "no regression suite in $SOURCE" >&2; exit 1; }

PG_PORT=$(free_port)
start_cluster "$PG_PORT"
# The hospital example's keyring and policy, as the other benchmarks make them.
"$PGSEAL_BIN" keys generate --out "$BENCH_DIR/keyring.toml" >/dev/null
hospital_policy_unbudgeted "$BENCH_DIR/hospital.toml"

serve() { # port [pgseal options…]
  local port=$1
  shift
  "$PGSEAL_BIN" serve --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PG_PORT" --log-level warn \
    "$@" 2>>"$BENCH_DIR/pgseal.log" &
  PIDS+=($!)
  wait_port "$port"
}
SEAL_PORT=$(free_port)
serve "$SEAL_PORT"
POLICY_PORT=$(free_port)
serve "$POLICY_PORT" --policy "$BENCH_DIR/hospital.toml" --keyring "$BENCH_DIR/keyring.toml"

# suite NAME PORT [pg_regress options…]: the parallel schedule in the database `regression`,
# results in $BENCH_DIR/NAME. Every run uses the same database name and library directory, so
# that the outputs compare byte for byte.
suite() {
  local name=$1 port=$2 out="$BENCH_DIR/$1" start end
  shift 2
  mkdir -p "$out" "$BENCH_DIR/lib"
  [ "$(id -u)" = 0 ] && chown postgres: "$out"
  start=$(date +%s.%N)
  as_server_user "$PG_REGRESS" --inputdir="$SUITE" --outputdir="$out" --bindir="$PG_BIN" \
    --dlpath="$BENCH_DIR/lib" --schedule="$SUITE/parallel_schedule" --host=127.0.0.1 --port="$port" \
    --user=postgres --dbname=regression --max-concurrent-tests=20 "$@" >"$out/run.log" 2>&1 || true
  end=$(date +%s.%N)
  # Each test's name and outcome: "     boolean   ... ok   45 ms" (PostgreSQL 15 and older) or
  # "ok 12   + boolean   45 ms" / "not ok 13 + char   30 ms" (16 and later).
  awk '/^ *(test +)?[a-z_0-9.]+ +\.\.\. +(ok|FAILED|failed)/ {
         for (i = 1; i <= NF; i++) if ($i == "...") print $(i - 1), ($(i + 1) == "ok") ? "ok" : "failed"
       }
       /^(not )?ok [0-9]+ / {
         n = ($1 == "not") ? 4 : 3
         if ($n == "+" || $n == "-") n++
         print $n, ($1 == "not") ? "failed" : "ok"
       }' \
    "$out/run.log" | sort -u >"$out/outcomes"
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }' >"$out/seconds"
}
suite direct "$PG_PORT"
suite pgseal "$SEAL_PORT"
# A protected session refuses what pgseal cannot analyse, and pg_regress's own setup
# (`CREATE DATABASE … TEMPLATE=template0`, `ALTER DATABASE … SET`) is among it: the database is
# made directly, as pg_regress makes it, and the suite then runs through the policy.
"$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -c 'DROP DATABASE IF EXISTS regression' -c 'CREATE DATABASE regression TEMPLATE=template0' \
  -c "ALTER DATABASE regression SET lc_messages TO 'C'" -c "ALTER DATABASE regression SET lc_monetary TO 'C'" \
  -c "ALTER DATABASE regression SET lc_numeric TO 'C'" -c "ALTER DATABASE regression SET lc_time TO 'C'" \
  -c "ALTER DATABASE regression SET bytea_output TO 'hex'" \
  -c "ALTER DATABASE regression SET timezone_abbreviations TO 'Default'"
suite policy "$POLICY_PORT" --use-existing

# same NAME: the tests whose output through NAME is the direct run's, byte for byte.
same() {
  while read -r test _; do
    if cmp -s "$BENCH_DIR/direct/results/$test.out" "$BENCH_DIR/$1/results/$test.out"; then
      echo "$test"
    fi
  done <"$BENCH_DIR/direct/outcomes"
}
TESTS=$(wc -l <"$BENCH_DIR/direct/outcomes")
count() { awk -v o="$2" '$2 == o' "$BENCH_DIR/$1/outcomes" | wc -l; }
printf '%-9s %6s %8s %24s %9s\n' path ok failed "output as direct" seconds
for run in direct pgseal policy; do
  printf '%-9s %6s %8s %24s %9s\n' "$run" "$(count "$run" ok)" "$(count "$run" failed)" \
    "$(same "$run" | wc -l) of $TESTS" "$(cat "$BENCH_DIR/$run/seconds")"
done
status=0
same pgseal >"$BENCH_DIR/pgseal/same"
if [ "$(wc -l <"$BENCH_DIR/pgseal/same")" != "$TESTS" ]; then
  echo
  echo "== through pgseal without a policy, tests whose output differs from the direct run:"
  while read -r test _; do
    grep -qx "$test" "$BENCH_DIR/pgseal/same" && continue
    echo "--- $test"
    diff "$BENCH_DIR/direct/results/$test.out" "$BENCH_DIR/pgseal/results/$test.out" | head -20 || true
  done <"$BENCH_DIR/direct/outcomes"
  status=1
fi
# Through the policy: which tests differ, and what pgseal refused in them (fail-closed: a
# statement it cannot analyse or does not allow is refused, never forwarded).
same policy >"$BENCH_DIR/policy/same"
echo
echo "== through pgseal with the policy, tests whose output differs from the direct run:"
while read -r test _; do
  grep -qx "$test" "$BENCH_DIR/policy/same" && continue
  echo "$test"
done <"$BENCH_DIR/direct/outcomes" | paste -sd ' ' | fold -s -w 100
echo
echo "== pgseal's refusals in those outputs (first line of each error), most frequent first:"
cat "$BENCH_DIR"/policy/results/*.out 2>/dev/null | grep -o 'ERROR:  pgseal[^:]*:\? *[^:]*' \
  | sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -15 || true
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  cp -r "$BENCH_DIR/direct" "$BENCH_DIR/pgseal" "$BENCH_DIR/policy" "$KEEP/"
fi
echo
[ "$status" = 0 ] && echo "without a policy, every test's output through pgseal is the direct run's, byte for byte"
echo "pg_regress parallel_schedule ($TESTS tests), PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'); $(nproc) cores; $(date -u +%F)"
exit "$status"

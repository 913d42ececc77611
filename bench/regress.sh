#!/usr/bin/env bash
# PostgreSQL's own regression suite through pgseal (issue 19: nothing regresses). pg_regress's
# parallel schedule runs four times, each on a fresh throwaway cluster:
#
#   - direct: straight to PostgreSQL;
#   - pgseal: through pgseal without a policy (the transparent relay);
#   - policy: through pgseal with the hospital policy (the protected path: its filters see
#     every statement, none of which touches a sealed table);
#   - forward: the same with `--unanalysable forward` (statements pgseal cannot parse pass when
#     they name no sealed table and cannot run server-side code).
#
# Each run uses the same database name, library directory and output directory, so each test's
# output is compared byte for byte with the direct run's. Without a policy every output must be
# the direct run's (the exit status says so; the differences are shown). With a policy, the
# tests whose output differs are listed, with pgseal's refusals found in them: it refuses what
# it cannot analyse or does not allow (fail closed). Tests that fail directly are listed too:
# the suite expects the C functions of regress.so, which a packaged server lacks and this
# script does not build, and what depends on them.
#
#   bash bench/regress.sh [SOURCE]
#
# SOURCE is a PostgreSQL source tree or tarball (postgresql-X.Y.tar.bz2, or Debian's
# .orig.tar.bz2) of the server's major version; without it the script fetches the server's own
# source with `apt-get source` (needs a deb-src line for the Debian archive). PGSEAL_BIN=path
# uses that pgseal instead of building; KEEP=dir keeps each run's results.
#
# A verification, not a timed benchmark: it prints the suite's wall time on each path, for
# scale only. Needs PostgreSQL server binaries with pg_regress (the Debian packages ship it in
# lib/pgxs) and psql.

set -euo pipefail
SOURCE=${1:+$(realpath "$1")}
[ -n "${PGSEAL_BIN:-}" ] && PGSEAL_BIN=$(realpath "$PGSEAL_BIN")
cd "$(dirname "$0")/.."
source bench/lib.sh

if [ -z "${PGSEAL_BIN:-}" ]; then
  cargo build --release -q -p pgseal
  PGSEAL_BIN=$PWD/target/release/pgseal
fi
PG_REGRESS="$PG_BIN/../lib/pgxs/src/test/regress/pg_regress"
[ -x "$PG_REGRESS" ] || { echo "pg_regress not found at $PG_REGRESS" >&2; exit 1; }
VERSION=$("$PG_BIN/postgres" --version | awk '{print $3}')
MAJOR=${VERSION%%.*}

trap bench_cleanup EXIT

# The suite: src/test/regress of the given source, or of the server's Debian source package.
if [ -z "$SOURCE" ]; then
  package=$(dpkg-query -W -f '${Version}' "postgresql-$MAJOR" 2>/dev/null) &&
    (cd "$BENCH_DIR" && apt-get source --download-only "postgresql-$MAJOR=$package" >/dev/null) || {
    echo "could not fetch postgresql-$MAJOR's source: pass a source tree or tarball" >&2
    exit 1
  }
  SOURCE=$(ls "$BENCH_DIR"/postgresql-"$MAJOR"_*.orig.tar.{bz2,gz,xz} 2>/dev/null | head -1)
fi
if [ -d "$SOURCE" ]; then
  SUITE=$SOURCE/src/test/regress
else
  tar -xf "$SOURCE" -C "$BENCH_DIR" --wildcards '*/src/test/regress'
  SUITE=$(ls -d "$BENCH_DIR"/postgresql-*/src/test/regress)
fi
[ -f "$SUITE/parallel_schedule" ] || { echo "no regression suite in $SOURCE" >&2; exit 1; }
[ "$(id -u)" = 0 ] && chmod -R a+rX "$SUITE"

PG_PORT=$(free_port)
"$PGSEAL_BIN" keys generate --out "$BENCH_DIR/keyring.toml" >/dev/null
hospital_policy_unbudgeted "$BENCH_DIR/hospital.toml"
POLICY=(--policy "$BENCH_DIR/hospital.toml" --keyring "$BENCH_DIR/keyring.toml")

# serve PORT [pgseal options…]: a pgseal in front of the cluster, for one run.
serve() {
  local port=$1
  shift
  "$PGSEAL_BIN" serve --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PG_PORT" --log-level warn \
    "$@" 2>>"$BENCH_DIR/pgseal.log" &
  PIDS+=($!)
  wait_port "$port"
}

# suite NAME PORT [pg_regress options…]: the parallel schedule on a fresh cluster, in the
# database `regression`, its results moved to $BENCH_DIR/NAME.
suite() {
  local name=$1 port=$2 out="$BENCH_DIR/out" start end
  shift 2
  rm -rf "$out"
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
  mv "$out" "$BENCH_DIR/$name"
}

# fresh: a new cluster, so that no run sees what an earlier one left (roles, tablespaces).
fresh() {
  stop_cluster
  rm -rf "$BENCH_DIR/data"
  start_cluster "$PG_PORT"
}

# A protected session refuses what pgseal cannot analyse, and pg_regress's own setup
# (`CREATE DATABASE … TEMPLATE=template0`, `ALTER DATABASE … SET`) is among it: for the runs
# with a policy, the database is made directly, as pg_regress makes it.
regression_database() {
  local settings=(lc_messages=C lc_monetary=C lc_numeric=C lc_time=C bytea_output=hex
    timezone_abbreviations=Default) setting args=()
  for setting in "${settings[@]}"; do
    args+=(-c "ALTER DATABASE regression SET ${setting%%=*} TO '${setting#*=}'")
  done
  "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c 'CREATE DATABASE regression TEMPLATE=template0' "${args[@]}"
}

fresh
suite direct "$PG_PORT"
fresh
port=$(free_port)
serve "$port"
suite pgseal "$port"
fresh
regression_database
port=$(free_port)
serve "$port" "${POLICY[@]}"
suite policy "$port" --use-existing
fresh
regression_database
port=$(free_port)
serve "$port" "${POLICY[@]}" --unanalysable forward
suite forward "$port" --use-existing

TESTS=$(wc -l <"$BENCH_DIR/direct/outcomes")
SCHEDULED=$(grep '^test:' "$SUITE/parallel_schedule" | wc -w)
SCHEDULED=$((SCHEDULED - $(grep -c '^test:' "$SUITE/parallel_schedule")))
if [ "$TESTS" != "$SCHEDULED" ]; then
  echo "the direct run gave $TESTS outcomes for $SCHEDULED scheduled tests:" >&2
  tail -20 "$BENCH_DIR/direct/run.log" >&2
  exit 1
fi

# same NAME: the tests whose output through NAME is the direct run's, byte for byte.
same() {
  while read -r test _; do
    if cmp -s "$BENCH_DIR/direct/results/$test.out" "$BENCH_DIR/$1/results/$test.out"; then
      echo "$test"
    fi
  done <"$BENCH_DIR/direct/outcomes"
}
# differing NAME: the other tests, on one line.
differing() {
  same "$1" >"$BENCH_DIR/$1/same"
  while read -r test _; do
    grep -qxF "$test" "$BENCH_DIR/$1/same" || echo "$test"
  done <"$BENCH_DIR/direct/outcomes" | paste -sd ' ' | fold -s -w 100
}
count() { awk -v o="$2" '$2 == o' "$BENCH_DIR/$1/outcomes" | wc -l; }
printf '%-9s %6s %8s %24s %9s\n' path ok failed "output as direct" seconds
for run in direct pgseal policy forward; do
  printf '%-9s %6s %8s %24s %9s\n' "$run" "$(count "$run" ok)" "$(count "$run" failed)" \
    "$(same "$run" | wc -l) of $TESTS" "$(cat "$BENCH_DIR/$run/seconds")"
done
echo
echo "== failing directly:"
awk '$2 == "failed" {print $1}' "$BENCH_DIR/direct/outcomes" | paste -sd ' ' | fold -s -w 100
status=0
if [ -n "$(differing pgseal)" ]; then
  echo
  echo "== through pgseal without a policy, tests whose output differs from the direct run:"
  while read -r test _; do
    grep -qxF "$test" "$BENCH_DIR/pgseal/same" && continue
    echo "--- $test"
    diff "$BENCH_DIR/direct/results/$test.out" "$BENCH_DIR/pgseal/results/$test.out" | head -20 || true
  done <"$BENCH_DIR/direct/outcomes"
  status=1
fi
for run in policy forward; do
  echo
  echo "== through pgseal with the policy ($run), tests whose output differs from the direct run:"
  differing "$run"
  echo "-- pgseal's refusals in the outputs (first line of each error), most frequent first:"
  cat "$BENCH_DIR/$run"/results/*.out 2>/dev/null | grep -o 'ERROR:  pgseal[^:]*:\? *[^:]*' \
    | sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -12 || true
done
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  cp -r "$BENCH_DIR/direct" "$BENCH_DIR/pgseal" "$BENCH_DIR/policy" "$BENCH_DIR/forward" "$KEEP/"
fi
echo
[ "$status" = 0 ] && echo "without a policy, every test's output through pgseal is the direct run's, byte for byte"
echo "pg_regress parallel_schedule ($TESTS tests), PostgreSQL $VERSION; $(nproc) cores; $(date -u +%F)"
exit "$status"

#!/usr/bin/env bash
# Search indexes (issue 15): searches on randomized sealed columns over TOTAL patients, through
# pgseal on the sealed database vs the same statement on a plaintext twin directly, before and
# after `pgseal migrate index`.
#
#   - the hospital example with six patient columns randomized and indexed (the tests'
#     INDEXED_COLUMNS, bench/lib.sh's hospital_policy_indexed), the application's budget lifted;
#   - seed SEED_PATIENTS patients into each database (through pgseal for the sealed one), then
#     grow both to TOTAL rows by copying their rows in SQL (the sealed copies are the same
#     ciphertext and tokens: they open, and ids match between the twins);
#   - unless STAMPED=1, strip the tokens pgseal wrote (`split_part(col, '~', 1)`: the envelope
#     alone), as in a database sealed before issue 15, so that `migrate index` stamps every row;
#   - time the searches once before any index (pgseal reads the whole table), then
#     `pgseal migrate index` (rows/s), then, pgseal's catalog reloaded, each search ROUNDS
#     times after one warm-up, in one psql session per side (psql's \timing: the statement, not
#     the connection), through pgseal vs plaintext direct — sent alone (phase `index`), then
#     inside a transaction block (phase `block`);
#   - report the results' rows (compared between the twins: the script stops on a difference),
#     the candidates pgseal checked (its /metrics `scanned` per run); the statement pgseal sent
#     for each search (from the server's log) timed directly, with a LIMIT for pages ordered by
#     id, and its EXPLAIN (ANALYZE, BUFFERS); the index sizes, as built and rebuilt.
#
#   bash bench/search.sh [TOTAL] [ROUNDS] [SEED_PATIENTS]
#
# Environment: PGSEAL_BIN=path (use this binary instead of building), SCAN_ROUNDS (runs
# before the index, default 1; 0 skips), STAMPED=1 (keep the tokens written through pgseal),
# PERF_OUT=file (a perf profile of pgseal during the page of a common prefix), EXPLAIN_OUT=file
# (the plans), PG_SHARED_BUFFERS=size (the server's shared_buffers, default 256MB), HOLD=file
# (keep the cluster and pgseal up at the end, their ports in that file, until it is removed).
#
# A benchmark, not a test: run it on an otherwise idle machine. Needs PostgreSQL server
# binaries (built with ICU) and psql.

set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

TOTAL=${1:-1000000}
ROUNDS=${2:-3}
SEED_PATIENTS=${3:-100000}
SCAN_ROUNDS=${SCAN_ROUNDS:-1}
if [ -n "${PGSEAL_BIN:-}" ]; then
  PGSEAL=$PGSEAL_BIN
else
  cargo build --release -q -p pgseal
  PGSEAL=$PWD/target/release/pgseal
fi

PG_PORT=$(free_port)
SEALED_PORT=$(free_port)
ADMIN_PORT=$(free_port)
trap bench_cleanup EXIT

say() { echo "[$(date +%T)] $*" >&2; }
now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
as_postgres() { # database, then psql arguments
  local db=$1; shift
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" -v ON_ERROR_STOP=1 "$@"
}
app() { # port database, then psql arguments
  local port=$1 db=$2; shift 2
  PGPASSWORD=ehr_app psql -X -q -h 127.0.0.1 -p "$port" -U ehr_app -d "$db" -v ON_ERROR_STOP=1 "$@"
}
scanned() {
  local v
  v=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null \
    | awk '/^pgseal_evaluated_rows_total\{role="ehr_app",stage="scanned"\}/ {print $2}' | head -1)
  echo "${v:-0}"
}

start_cluster "$PG_PORT"
for db in sealed plain; do
  as_postgres postgres -c "CREATE DATABASE $db TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'fr-FR'" >/dev/null
  as_postgres "$db" -f policies/examples/hospital.sql >/dev/null
done

"$PGSEAL" keys generate --out "$BENCH_DIR/keyring.toml" >/dev/null
hospital_policy_indexed "$BENCH_DIR/hospital.toml"
"$PGSEAL" serve --listen "127.0.0.1:$SEALED_PORT" --upstream "127.0.0.1:$PG_PORT" \
  --policy "$BENCH_DIR/hospital.toml" --keyring "$BENCH_DIR/keyring.toml" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --evaluation-max-rows 2000000 \
  --evaluation-max-bytes 1GiB --log-level warn 2>"$BENCH_DIR/sealed.log" &
SEALED_PID=$!
PIDS+=("$SEALED_PID")
wait_port "$SEALED_PORT"

say "seeding $SEED_PATIENTS patients into each database, then growing both to $TOTAL"
t0=$(now)
"$PGSEAL" seed --database-url "host=127.0.0.1 port=$SEALED_PORT user=ehr_app password=ehr_app dbname=sealed" \
  --patients "$SEED_PATIENTS" --consultations-per-patient 0 --quiet >/dev/null
t1=$(now)
"$PGSEAL" seed --database-url "host=127.0.0.1 port=$PG_PORT user=ehr_app password=ehr_app dbname=plain" \
  --patients "$SEED_PATIENTS" --consultations-per-patient 0 --quiet >/dev/null
say "seeded: $(seconds "$t0" "$t1") s through pgseal"
for db in sealed plain; do
  as_postgres "$db" <<SQL >/dev/null
ALTER TABLE patients DROP CONSTRAINT patients_nir_key;
DO \$\$ BEGIN
  WHILE (SELECT count(*) FROM patients) < $TOTAL LOOP
    INSERT INTO patients (nir, last_name, first_name, birth_date, sex, email, phone, address, postal_code, city, gp_name)
    SELECT nir, last_name, first_name, birth_date, sex, email, phone, address, postal_code, city, gp_name
    FROM patients ORDER BY id LIMIT $TOTAL - (SELECT count(*) FROM patients);
  END LOOP;
END \$\$;
SQL
done
INDEXED=(last_name first_name birth_date email phone address)
if [ -z "${STAMPED:-}" ]; then
  # A database sealed before issue 15: the envelopes alone. VACUUM FULL drops the old versions.
  set_list=$(printf "%s = split_part(%s, '~', 1), " $(for c in "${INDEXED[@]}"; do echo "$c $c"; done))
  as_postgres sealed -c "UPDATE patients SET ${set_list%, }" -c "VACUUM FULL patients" >/dev/null
  as_postgres sealed -A -t -c "SELECT count(*) FROM patients WHERE address LIKE '%~%'" | grep -qx 0
fi
for db in sealed plain; do as_postgres "$db" -c "VACUUM ANALYZE patients" >/dev/null; done
say "grown to $(as_postgres sealed -A -t -c 'SELECT count(*) FROM patients') rows"

# A phone suffix that exists: the last two pairs of one patient's number (the seed writes
# "06 12 34 56 78").
SUFFIX=$(as_postgres plain -A -t -c "SELECT right(phone, 5) FROM patients WHERE phone IS NOT NULL ORDER BY id OFFSET 4241 LIMIT 1")
NAMES=(prefix page page4 idpage phone box box_rare birth)
declare -A QUERIES=(
  [prefix]="SELECT id, last_name, first_name FROM patients WHERE last_name ILIKE 'mar%'"
  [page]="SELECT id, last_name, first_name FROM patients WHERE last_name ILIKE 'mar%' ORDER BY last_name LIMIT 20"
  [page4]="SELECT id, last_name, first_name FROM patients WHERE last_name ILIKE 'mart%' ORDER BY last_name LIMIT 20"
  [idpage]="SELECT id, last_name, first_name FROM patients WHERE last_name ILIKE 'mar%' ORDER BY id LIMIT 20"
  [phone]="SELECT id FROM patients WHERE phone LIKE '%$SUFFIX'"
  [box]="SELECT id, last_name, first_name FROM patients WHERE last_name ILIKE '%mar%' OR first_name ILIKE 'mar%' OR email ILIKE '%mar%' OR phone LIKE '%mar%' OR address ILIKE '%mar%' ORDER BY id LIMIT 50"
  [box_rare]="SELECT id, last_name, first_name FROM patients WHERE last_name ILIKE '%lefeb%' OR first_name ILIKE 'lefeb%' OR email ILIKE '%lefeb%' OR phone LIKE '%lefeb%' OR address ILIKE '%lefeb%' ORDER BY id LIMIT 50"
  [birth]="SELECT id FROM patients WHERE birth_date BETWEEN '1980-01-01' AND '1980-12-31'"
)

# digest PORT DB SQL NAME: what must match between the twins (the page's ties on last_name may
# pick other ids: its names, in order, must match).
digest() {
  if [ "$4" = page ] || [ "$4" = page4 ]; then
    app "$1" "$2" -A -t -F '|' -c "$3" | cut -d'|' -f2 | md5sum
  else
    app "$1" "$2" -A -t -F '|' -c "$3" | sort | md5sum
  fi
}
# timings PORT DB SQL RUNS: one psql session, the statement RUNS times, psql's \timing (ms);
# with IN_BLOCK=1, all of them inside one transaction block (BEGIN and COMMIT not timed).
timings() {
  {
    echo '\o /dev/null'
    [ "${IN_BLOCK:-0}" = 1 ] && echo 'BEGIN;'
    echo '\timing on'
    for _ in $(seq 1 "$4"); do echo "$3;"; done
    echo '\timing off'
    [ "${IN_BLOCK:-0}" = 1 ] && echo 'COMMIT;'
    true
  } | app "$1" "$2" -f - | awk '/^Time:/ {print $2}'
}

# measure PHASE WARMUPS RUNS: every query, through pgseal and directly; one line each in
# $BENCH_DIR/results.
measure() {
  local phase=$1 warm=$2 runs=$3 name sql rows direct_rows before after s p t all
  for name in "${NAMES[@]}"; do
    sql=${QUERIES[$name]}
    rows=$(app "$SEALED_PORT" sealed -A -t -c "$sql" | wc -l)
    direct_rows=$(app "$PG_PORT" plain -A -t -c "$sql" | wc -l)
    if [ "$rows" != "$direct_rows" ] \
      || [ "$(digest "$SEALED_PORT" sealed "$sql" "$name")" != "$(digest "$PG_PORT" plain "$sql" "$name")" ]; then
      echo "$phase $name: $rows rows through pgseal, $direct_rows directly, or other rows: $sql" >&2
      exit 1
    fi
    before=$(scanned)
    mapfile -t all < <(timings "$SEALED_PORT" sealed "$sql" $((warm + runs)))
    after=$(scanned)
    s=$(median "${all[@]:$warm}")
    mapfile -t all < <(timings "$PG_PORT" plain "$sql" $((warm + runs)))
    p=$(median "${all[@]:$warm}")
    awk -v ph="$phase" -v n="$name" -v s="$s" -v p="$p" -v r="$rows" \
      -v c="$(awk -v a="$before" -v b="$after" -v k=$((warm + runs)) 'BEGIN { printf "%d", (b - a) / k }')" \
      'BEGIN { printf "%-7s %-9s %11.1f %11.1f %8.1f %9d %11d\n", ph, n, s, p, s/p, r, c }' \
      | tee -a "$BENCH_DIR/results" >&2
  done
}
printf "%-7s %-9s %11s %11s %8s %9s %11s\n" phase query "pgseal ms" "direct ms" ratio rows candidates \
  | tee "$BENCH_DIR/results" >&2

if [ "$SCAN_ROUNDS" -gt 0 ]; then
  say "searching without an index ($SCAN_ROUNDS run each, plain warmed)"
  measure scan 0 "$SCAN_ROUNDS"
fi

say "pgseal migrate index"
t0=$(now)
"$PGSEAL" migrate index --database-url "host=127.0.0.1 port=$PG_PORT user=postgres dbname=sealed" \
  --policy "$BENCH_DIR/hospital.toml" --keyring "$BENCH_DIR/keyring.toml" --quiet \
  >"$BENCH_DIR/migrate.out" 2>&1 || { cat "$BENCH_DIR/migrate.out" >&2; exit 1; }
t1=$(now)
MIGRATE_S=$(seconds "$t0" "$t1")
as_postgres sealed -c "VACUUM ANALYZE patients" >/dev/null # as autovacuum would: GIN's pending list merged

# pgseal reloads its catalog after DDL through it. The session that finds the catalog
# dropped plans its first statement before its reload answers (as an empty catalog: no index),
# hence the SELECT 1; then the prefix search must check candidates, not the whole table.
app "$SEALED_PORT" sealed -c "CREATE TEMPORARY TABLE pgseal_bench_reload (i int)" >/dev/null
app "$SEALED_PORT" sealed -c "SELECT 1" >/dev/null
before=$(scanned)
app "$SEALED_PORT" sealed -A -t -c "${QUERIES[prefix]}" >/dev/null
after=$(scanned)
if awk -v a="$before" -v b="$after" -v t="$TOTAL" 'BEGIN { exit !(b - a >= t) }'; then
  say "pgseal still scans $TOTAL rows after the reload: waiting 31 s for its catalog"
  sleep 31
  before=$(scanned)
  app "$SEALED_PORT" sealed -A -t -c "${QUERIES[prefix]}" >/dev/null
  after=$(scanned)
  if awk -v a="$before" -v b="$after" -v t="$TOTAL" 'BEGIN { exit !(b - a >= t) }'; then
    echo "pgseal does not use the index: $((${after%.*} - ${before%.*})) rows scanned for the prefix search" >&2
    exit 1
  fi
fi

say "searching with the indexes ($ROUNDS runs each after one warm-up)"
measure index 1 "$ROUNDS"
say "the same, inside a transaction block (where pgseal cannot cancel the server)"
IN_BLOCK=1 measure block 1 "$ROUNDS"

# Where the time goes: the statement pgseal sends the server for each search (from the server's
# log), timed directly (the server, and the transfer of the candidates' ciphertext to psql, no
# pgseal), and its plan. A search ordered by an unsealed key with a LIMIT is sent without its
# LIMIT (pgseal checks the candidates and stops the server once its page is full): the same
# statement with a LIMIT shows what a fast-start plan would cost.
as_postgres postgres -c "ALTER SYSTEM SET log_min_duration_statement = 0" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
LOG="$BENCH_DIR/run/postgres.log"
: >"$BENCH_DIR/server"
: >"$BENCH_DIR/explain"
direct_timings() { # sql runs [database]: as postgres (on the sealed database unless named), psql's \timing (ms)
  {
    echo '\o /dev/null'
    echo '\timing on'
    for _ in $(seq 1 "$2"); do echo "$1;"; done
  } | as_postgres "${3:-sealed}" -f - | awk '/^Time:/ {print $2}'
}
for name in "${NAMES[@]}"; do
  mark=$(wc -l <"$LOG")
  app "$SEALED_PORT" sealed -A -t -c "${QUERIES[$name]}" >/dev/null
  sleep 0.3
  tail -n +$((mark + 1)) "$LOG" >"$BENCH_DIR/log.$name"
  # Logged with its duration, or as STATEMENT when pgseal cancelled it after its page.
  # A page read through pgseal's cursor: its query.
  rewritten=$(awk '/ statement: SELECT / { sub(/.* statement: /, ""); s = $0 } /STATEMENT:  SELECT / { sub(/.*STATEMENT:  /, ""); s = $0 } / CURSOR FOR SELECT / { sub(/.* CURSOR FOR /, ""); s = $0 } END { print s }' "$BENCH_DIR/log.$name")
  cancelled=no
  grep -q 'canceling statement due to user request' "$BENCH_DIR/log.$name" && cancelled=yes
  mapfile -t all < <(direct_timings "$rewritten" $((1 + ROUNDS)))
  d=$(median "${all[@]:1}")
  l=-
  if [[ ${QUERIES[$name]} == *"ORDER BY id LIMIT"* ]]; then
    mapfile -t all < <(direct_timings "$rewritten LIMIT 100" $((1 + ROUNDS)))
    l=$(median "${all[@]:1}")
  fi
  printf "%-9s %12s %14s %10s\n" "$name" "$d" "$l" "$cancelled" >>"$BENCH_DIR/server"
  {
    echo "=== $name: ${QUERIES[$name]}"
    echo "--- sent by pgseal: $rewritten"
    as_postgres sealed -c "EXPLAIN (ANALYZE, BUFFERS) $rewritten" || true
  } >>"$BENCH_DIR/explain" 2>&1
done
as_postgres postgres -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" >/dev/null

# The plaintext twin at its best for the prefix search: an index of its own for it (a pattern
# index on lower(last_name)) and the statement written to use it. What the plaintext database
# itself takes to hand over the same rows: the floor for pgseal's prefix search on this machine.
PREFIX_INDEXED="SELECT id, last_name, first_name FROM patients WHERE lower(last_name) LIKE 'mar%'"
as_postgres plain -c "CREATE INDEX bench_prefix ON patients (lower(last_name) text_pattern_ops)" \
  -c "ANALYZE patients" >/dev/null
mapfile -t all < <(direct_timings "$PREFIX_INDEXED" $((1 + ROUNDS)) plain)
PLAIN_INDEXED_MS=$(median "${all[@]:1}")
PLAIN_INDEXED_ROWS=$(as_postgres plain -A -t -c "SELECT count(*) FROM ($PREFIX_INDEXED) s")
PREFIX_ROWS=$(as_postgres plain -A -t -c "SELECT count(*) FROM (${QUERIES[prefix]}) s")
if [ "$PLAIN_INDEXED_ROWS" != "$PREFIX_ROWS" ]; then
  echo "the indexed form found $PLAIN_INDEXED_ROWS rows, the prefix search $PREFIX_ROWS" >&2
  exit 1
fi
{
  echo "=== the prefix search on the plaintext twin with its own index: $PREFIX_INDEXED"
  as_postgres plain -c "EXPLAIN (ANALYZE, BUFFERS) $PREFIX_INDEXED"
} >>"$BENCH_DIR/explain" 2>&1
as_postgres plain -c "DROP INDEX bench_prefix" >/dev/null

if [ -n "${PERF_OUT:-}" ] && command -v perf >/dev/null; then
  # pgseal's own time on the page of a common prefix (34,000 candidates at 1M patients).
  perf record -q -g -p "$SEALED_PID" -o "$BENCH_DIR/perf.data" -- sleep 6 >/dev/null 2>&1 &
  PERF_PID=$!
  sleep 0.5
  for _ in 1 2 3 4 5; do app "$SEALED_PORT" sealed -A -t -c "${QUERIES[page]}" >/dev/null; done
  wait "$PERF_PID" || true
  perf report -q --stdio --no-children -i "$BENCH_DIR/perf.data" --percent-limit 1.5 \
    --sort symbol -g none 2>/dev/null | grep -v '^$' | head -40 >"$PERF_OUT" || true
fi

connect_wall() { # port database -> median wall time of 5 new sessions running SELECT 1
  local t=() a b
  for _ in 1 2 3 4 5; do
    a=$(now); app "$1" "$2" -A -t -c "SELECT 1" >/dev/null; b=$(now); t+=("$(seconds "$a" "$b")")
  done
  median "${t[@]}"
}
CONNECT_SEALED=$(connect_wall "$SEALED_PORT" sealed)
CONNECT_PLAIN=$(connect_wall "$PG_PORT" plain)

# Index sizes: each GIN index vs its column (envelope + tokens) and the tokens alone.
for c in "${INDEXED[@]}"; do
  as_postgres sealed -A -t -F ' ' -c "SELECT '$c', pg_relation_size('pgseal_tokens_$c'), sum(pg_column_size($c)), sum(octet_length(split_part($c, '~', 3))) FROM patients"
done >"$BENCH_DIR/sizes"
# The same indexes built afresh (migrate index builds them empty, then stamps the rows through
# GIN's pending list).
for c in "${INDEXED[@]}"; do
  as_postgres sealed -c "REINDEX INDEX pgseal_tokens_$c" >/dev/null
  as_postgres sealed -A -t -c "SELECT pg_relation_size('pgseal_tokens_$c')"
done >"$BENCH_DIR/sizes_rebuilt"
paste -d ' ' "$BENCH_DIR/sizes" "$BENCH_DIR/sizes_rebuilt" >"$BENCH_DIR/sizes_all"
TABLE_SIZE=$(as_postgres sealed -A -t -c "SELECT pg_table_size('patients')")
PLAIN_TABLE_SIZE=$(as_postgres plain -A -t -c "SELECT pg_table_size('patients')")

[ -n "${EXPLAIN_OUT:-}" ] && cp "$BENCH_DIR/explain" "$EXPLAIN_OUT"

echo
echo "== searches (median ms; candidates = rows pgseal checked per run)"
cat "$BENCH_DIR/results"
echo
echo "== the statement pgseal sent, run directly (median ms; with LIMIT 100 for ORDER BY id pages; cancelled by pgseal?)"
printf "%-9s %12s %14s %10s\n" query "direct ms" "+LIMIT 100 ms" cancelled
cat "$BENCH_DIR/server"
echo
echo "== the prefix search on the plaintext twin with an index of its own (lower(last_name) text_pattern_ops),"
echo "   directly: $PLAIN_INDEXED_MS ms for $PLAIN_INDEXED_ROWS rows"
echo
echo "== migrate index: $MIGRATE_S s for $TOTAL rows ($(awk -v s="$MIGRATE_S" -v t="$TOTAL" 'BEGIN { printf "%.0f", t / s }') rows/s)"
cat "$BENCH_DIR/migrate.out"
echo
echo "== index sizes (MB): after migrate index, rebuilt (REINDEX); the column (envelope + tokens), its tokens alone"
printf "%-11s %9s %9s %9s %9s %9s %9s\n" column index rebuilt "column" tokens "idx/col" "rebuilt/col"
awk '{ printf "%-11s %9.1f %9.1f %9.1f %9.1f %9.2f %9.2f\n", $1, $2/1e6, $5/1e6, $3/1e6, $4/1e6, $2/$3, $5/$3; i += $2; r += $5; c += $3; t += $4 }
     END { printf "%-11s %9.1f %9.1f %9.1f %9.1f %9.2f %9.2f\n", "all six", i/1e6, r/1e6, c/1e6, t/1e6, i/c, r/c; print i, r > "/dev/stderr" }' \
  "$BENCH_DIR/sizes_all" 2>"$BENCH_DIR/idx_total"
read -r IDX_TOTAL IDX_REBUILT <"$BENCH_DIR/idx_total"
awk -v i="$IDX_TOTAL" -v r="$IDX_REBUILT" -v t="$TABLE_SIZE" -v p="$PLAIN_TABLE_SIZE" \
  'BEGIN { printf "pg_table_size(patients): %.1f MB sealed (%.1f MB plaintext twin); the six indexes: %.1f MB (%.2f of the sealed table), rebuilt %.1f MB (%.2f)\n", t/1e6, p/1e6, i/1e6, i/t, r/1e6, r/t }'
echo "a new connection and SELECT 1 (psql's wall time, median of 5): $CONNECT_SEALED s through pgseal, $CONNECT_PLAIN s directly"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$SEALED_PID/status")
if [ -n "${HOLD:-}" ]; then
  # Keep everything up for a look by hand, until the file HOLD names is removed.
  echo "PG_PORT=$PG_PORT SEALED_PORT=$SEALED_PORT ADMIN_PORT=$ADMIN_PORT BENCH_DIR=$BENCH_DIR" >"$HOLD"
  while [ -e "$HOLD" ]; do sleep 5; done
fi
awk -v r="$rss" 'BEGIN { printf "pgseal peak RSS (VmHWM): %.1f MiB\n", r/1024 }'
echo "$TOTAL patients ($SEED_PATIENTS seeded); median of $ROUNDS runs; $(nproc) cores; $(date -u +%F)"

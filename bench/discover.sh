#!/usr/bin/env bash
# Discovery benchmark (issue 21): `pgseal policy discover` on a database of TABLES tables and
# about TARGET_MB megabytes, the target being 200 tables / 1 GB in under a minute.
#
#   - seed 10,000 plaintext patients (the hospital example) straight into PostgreSQL;
#   - build TABLES more tables with generate_series, in four shapes taken in turn: a patient
#     copy (a foreign key to patients, the patient's full name, e-mail and a note copied from
#     a consultation, a timestamp, an amount), an event log linked to patients only by a
#     `patient_id` name (a code, a status, jsonb, a timestamp), plain numbers and hashes, and
#     an ORM-style name table (a foreign key, first and last names, a `<uuid>-<first name>`
#     code); every tenth table ten times the rows of the others, the rows sized so that the
#     database reaches about TARGET_MB;
#   - VACUUM ANALYZE (the planner's row estimates decide where discovery uses TABLESAMPLE);
#   - time `pgseal policy discover --sample-rows SAMPLE` and `pgseal policy check` with the
#     draft it wrote (the check samples too), and print the database's size, the report's
#     counts, and the time.
#
#   bash bench/discover.sh [TABLES] [TARGET_MB] [SAMPLE]
#
# Environment: PGSEAL_BIN=path (use this binary instead of building), KEEP=dir (copy the
# report, the check's output and the draft there before the cluster is removed).
#
# A benchmark, not a test: run it on an otherwise idle machine. Needs PostgreSQL server
# binaries and psql.

set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

TABLES=${1:-200}
TARGET_MB=${2:-1024}
SAMPLE=${3:-1000}
if [ -n "${PGSEAL_BIN:-}" ]; then
  PGSEAL=$PGSEAL_BIN
else
  cargo build --release -q -p pgseal
  PGSEAL=${CARGO_TARGET_DIR:-$PWD/target}/release/pgseal
fi

PG_PORT=$(free_port)
cleanup() {
  stop_cluster
  [ -n "${KEEP:-}" ] && cp "$BENCH_DIR"/report.txt "$BENCH_DIR"/check.txt "$BENCH_DIR"/draft.toml "$KEEP"/ 2>/dev/null
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

hospital_database "$PG_PORT"

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "seeding 10,000 plaintext patients…" >&2
"$PGSEAL" seed --database-url "$URL" --patients 10000 --quiet >/dev/null

# Rows per ordinary table: every tenth table counts ten times; rows average about 150 bytes
# on disk (with their share of indexes).
units=$(( TABLES - TABLES / 10 + 10 * (TABLES / 10) ))
ROWS=$(( TARGET_MB * 1024 * 1024 / 150 / units ))
echo "building $TABLES tables of $ROWS rows (every tenth of $((ROWS * 10)))…" >&2
t0=$(now)
for i in $(seq 1 "$TABLES"); do
  rows=$ROWS
  [ $((i % 10)) = 0 ] && rows=$((ROWS * 10))
  case $((i % 4)) in
    0) sql="CREATE TABLE t$i (id bigint PRIMARY KEY, patient_id bigint REFERENCES patients (id),
          created_at timestamptz NOT NULL, full_name text, contact text, note text,
          amount numeric(10,2));
        INSERT INTO t$i SELECT g, p.id, now() - g * interval '1 minute',
          p.first_name || ' ' || p.last_name, p.email,
          (SELECT c.notes FROM consultations c WHERE c.id = 1 + g % 20000), (g % 10000) / 7.0
        FROM generate_series(1, $rows) g JOIN patients p ON p.id = 1 + g % 10000;" ;;
    1) sql="CREATE TABLE t$i (id bigint PRIMARY KEY, patient_id bigint, code text, status text,
          payload jsonb, happened_at timestamptz);
        INSERT INTO t$i SELECT g, 1 + g % 10000, 'ACT' || (g % 500), (ARRAY['new','done','void'])[1 + g % 3],
          jsonb_build_object('n', g, 'k', md5(g::text)), now() - g * interval '1 second'
        FROM generate_series(1, $rows) g;" ;;
    2) sql="CREATE TABLE t$i (id bigint PRIMARY KEY, a integer, b float8, c text, d date);
        INSERT INTO t$i SELECT g, g % 1000, g / 3.0, md5(g::text), date '2020-01-01' + g % 1500
        FROM generate_series(1, $rows) g;" ;;
    3) sql="CREATE TABLE t$i (id bigint PRIMARY KEY, patient_id bigint NOT NULL REFERENCES patients (id),
          given text, family text, code text);
        INSERT INTO t$i SELECT g, p.id, p.first_name, p.last_name,
          md5(p.id::text)::uuid::text || '-' || p.first_name
        FROM generate_series(1, $rows) g JOIN patients p ON p.id = 1 + g % 10000;" ;;
  esac
  "${PSQL[@]}" -c "$sql"
done
"${PSQL[@]}" -c "VACUUM ANALYZE"
t1=$(now)
build_s=$(seconds "$t0" "$t1")
size=$("${PSQL[@]}" -c "SELECT pg_size_pretty(pg_database_size('ehr'))")
bytes=$("${PSQL[@]}" -c "SELECT pg_database_size('ehr')")
tables=$("${PSQL[@]}" -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")

t0=$(now)
"$PGSEAL" policy discover --database-url "$URL" --sample-rows "$SAMPLE" \
  --output "$BENCH_DIR/draft.toml" >"$BENCH_DIR/report.txt" 2>"$BENCH_DIR/discover.err"
t1=$(now)
discover_s=$(seconds "$t0" "$t1")
t0=$(now)
"$PGSEAL" policy check --policy "$BENCH_DIR/draft.toml" --database-url "$URL" \
  >"$BENCH_DIR/check.txt" 2>"$BENCH_DIR/check.err" || true
t1=$(now)
check_s=$(seconds "$t0" "$t1")

echo
echo "pgseal policy discover on $tables tables, $size ($bytes bytes), built in $build_s s"
cat "$BENCH_DIR/discover.err"
echo "report lines: $(wc -l <"$BENCH_DIR/report.txt"), of which copies: $(grep -c 'copy of' "$BENCH_DIR/report.txt" || true)"
echo "check: $(grep -c 'warning:' "$BENCH_DIR/check.txt" || true) warnings; $(tail -n 1 "$BENCH_DIR/check.err")"
printf '| step | wall time |\n| --- | --- |\n'
printf '| `policy discover --sample-rows %s` | %s s |\n' "$SAMPLE" "$discover_s"
printf '| `policy check --database-url` (its draft, 200 rows sampled) | %s s |\n' "$check_s"

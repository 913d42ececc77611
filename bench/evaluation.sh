#!/usr/bin/env bash
# Evaluation inside pgseal (issue 14): sorts and searches on sealed names over TOTAL patients,
# through pgseal on the sealed database vs the same statement on a plaintext twin directly.
#
#   - seed SEED_PATIENTS patients into each database (through pgseal for the sealed one), then
#     grow both to TOTAL rows by copying their rows in SQL (the sealed copies are the same
#     ciphertext: they open);
#   - time, as ehr_app, a first page sorted by name, a search by the start of a name, a
#     five-column OR search box (three sealed columns, two unsealed), the distinct first
#     names (randomized) of the patients a name search finds, and a search box reaching each
#     patient's consultation notes through an IN subquery (counted), ROUNDS times each;
#   - report the ratio, the rows pgseal scanned (its /metrics) and its peak RSS (VmHWM).
#
#   bash bench/evaluation.sh [TOTAL] [ROUNDS] [SEED_PATIENTS]
#
# A benchmark, not a test: run it on an otherwise idle machine. Needs PostgreSQL server
# binaries (built with ICU) and psql.

set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

TOTAL=${1:-1000000}
ROUNDS=${2:-3}
SEED_PATIENTS=${3:-100000}
cargo build --release -q -p pgseal
PGSEAL=$PWD/target/release/pgseal

PG_PORT=$(free_port)
SEALED_PORT=$(free_port)
ADMIN_PORT=$(free_port)
trap bench_cleanup EXIT

start_cluster "$PG_PORT"
for db in sealed plain; do
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE $db TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'fr-FR'" >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" \
    -f policies/examples/hospital.sql >/dev/null
done

"$PGSEAL" keys generate --out "$BENCH_DIR/keyring.toml" >/dev/null
# The hospital policy with the application's budget lifted: this measures evaluation, and a
# search returns tens of thousands of rows.
hospital_policy_unbudgeted "$BENCH_DIR/hospital.toml"
"$PGSEAL" serve --listen "127.0.0.1:$SEALED_PORT" --upstream "127.0.0.1:$PG_PORT" \
  --policy "$BENCH_DIR/hospital.toml" --keyring "$BENCH_DIR/keyring.toml" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --evaluation-max-rows 2000000 \
  --evaluation-max-bytes 1GiB --log-level warn 2>"$BENCH_DIR/sealed.log" &
SEALED_PID=$!
PIDS+=("$SEALED_PID")
wait_port "$SEALED_PORT"

echo "seeding $SEED_PATIENTS patients into each database, then growing both to $TOTAL…" >&2
"$PGSEAL" seed --database-url "host=127.0.0.1 port=$SEALED_PORT user=ehr_app password=ehr_app dbname=sealed" \
  --patients "$SEED_PATIENTS" --consultations-per-patient 1 --quiet >/dev/null
"$PGSEAL" seed --database-url "host=127.0.0.1 port=$PG_PORT user=ehr_app password=ehr_app dbname=plain" \
  --patients "$SEED_PATIENTS" --consultations-per-patient 1 --quiet >/dev/null
for db in sealed plain; do
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" -v ON_ERROR_STOP=1 <<SQL >/dev/null
ALTER TABLE patients DROP CONSTRAINT patients_nir_key;
DO \$\$ BEGIN
  WHILE (SELECT count(*) FROM patients) < $TOTAL LOOP
    INSERT INTO patients (nir, last_name, first_name, birth_date, sex, email, phone, address, postal_code, city, gp_name)
    SELECT nir, last_name, first_name, birth_date, sex, email, phone, address, postal_code, city, gp_name
    FROM patients ORDER BY id LIMIT $TOTAL - (SELECT count(*) FROM patients);
  END LOOP;
END \$\$;
-- Each copied patient gets the consultations of the seeded patient it copies (ids are
-- contiguous from the first seeded one).
INSERT INTO consultations (patient_id, seen_at, diagnosis_code, notes, prescription)
SELECT p.id, c.seen_at, c.diagnosis_code, c.notes, c.prescription
FROM patients p
JOIN consultations c
  ON c.patient_id = (SELECT min(id) FROM patients) + (p.id - (SELECT min(id) FROM patients)) % $SEED_PATIENTS
WHERE p.id >= (SELECT min(id) FROM patients) + $SEED_PATIENTS;
VACUUM ANALYZE patients;
VACUUM ANALYZE consultations;
SQL
done

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
run() { # port database sql -> rows
  PGPASSWORD=ehr_app psql -X -q -A -t -h 127.0.0.1 -p "$1" -U ehr_app -d "$2" -v ON_ERROR_STOP=1 -c "$3" | wc -l
}
scanned() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null \
    | awk '/^pgseal_evaluated_rows_total\{role="ehr_app",stage="scanned"\}/ {print $2}' | head -1 \
    || echo 0
}

declare -A QUERIES=(
  [page]="SELECT id, last_name, first_name FROM patients ORDER BY last_name, first_name, id LIMIT 50"
  [prefix]="SELECT id, last_name, first_name FROM patients WHERE last_name ILIKE 'mar%'"
  [search]="SELECT id, last_name, first_name FROM patients WHERE last_name ILIKE '%mar%' OR first_name ILIKE '%mar%' OR email ILIKE '%mar%' OR city ILIKE '%mar%' OR gp_name ILIKE '%mar%' ORDER BY id LIMIT 50"
  [distinct]="SELECT DISTINCT first_name FROM patients WHERE last_name ILIKE 'mar%' ORDER BY first_name"
  [subquery]="SELECT count(*) FROM patients p WHERE p.last_name ILIKE 'mar%' OR p.id IN (SELECT c.patient_id FROM consultations c WHERE c.notes ILIKE '%tension%')"
)
printf "\n%-8s %10s %10s %8s %10s %12s\n" "query" "pgseal s" "direct s" "ratio" "rows" "scanned"
for name in ${BENCH_QUERIES:-page prefix search distinct subquery}; do
  sql=${QUERIES[$name]}
  run "$PG_PORT" plain "$sql" >/dev/null # warm the cache
  sealed=(); plain=(); rows=0
  before=$(scanned); before=${before:-0}
  for _ in $(seq 1 "$ROUNDS"); do
    t0=$(now); rows=$(run "$SEALED_PORT" sealed "$sql"); t1=$(now)
    direct_rows=$(run "$PG_PORT" plain "$sql"); t2=$(now)
    if [ "$rows" != "$direct_rows" ]; then
      echo "$name: $rows rows through pgseal, $direct_rows directly" >&2
      if [ -n "${BENCH_DEBUG:-}" ]; then
        PGPASSWORD=ehr_app psql -X -q -A -t -h 127.0.0.1 -p "$SEALED_PORT" -U ehr_app -d sealed -c "$sql" | sort >"$BENCH_DIR/s.txt"
        PGPASSWORD=ehr_app psql -X -q -A -t -h 127.0.0.1 -p "$PG_PORT" -U ehr_app -d plain -c "$sql" | sort >"$BENCH_DIR/p.txt"
        diff "$BENCH_DIR/s.txt" "$BENCH_DIR/p.txt" >&2 || true
      fi
      exit 1
    fi
    sealed+=("$(seconds "$t0" "$t1")"); plain+=("$(seconds "$t1" "$t2")")
  done
  after=$(scanned); after=${after:-0}
  s=$(median "${sealed[@]}"); p=$(median "${plain[@]}")
  awk -v n="$name" -v s="$s" -v p="$p" -v r="$rows" -v sc="$(( (${after%.*} - ${before%.*}) / ROUNDS ))" \
    'BEGIN { printf "%-8s %10.3f %10.3f %8.1f %10d %12d\n", n, s, p, s/p, r, sc }'
done
if [ -n "${PERF_OUT:-}" ] && command -v perf >/dev/null; then
  # Where pgseal's time goes on the sorted page: perf samples of the proxy during one run.
  perf record -q -g -p "$SEALED_PID" -o "$BENCH_DIR/perf.data" -- sleep 4 >/dev/null 2>&1 &
  PERF_PID=$!
  sleep 0.5
  run "$SEALED_PORT" sealed "${QUERIES[page]}" >/dev/null
  wait "$PERF_PID" || true
  perf report -q --stdio --no-children -i "$BENCH_DIR/perf.data" --percent-limit 1.5 \
    --sort symbol 2>/dev/null | grep -v '^$' | head -60 >"$PERF_OUT" || true
fi
rss=$(awk '/VmHWM/ {print $2}' "/proc/$SEALED_PID/status")
awk -v r="$rss" 'BEGIN { printf "\npgseal peak RSS (VmHWM): %.1f MiB\n", r/1024 }'
echo "$TOTAL patients; median of $ROUNDS runs; $(nproc) cores; $(date -u +%F)"

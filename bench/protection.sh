#!/usr/bin/env bash
# Field-protection benchmark (issue 5): the hospital example, 100,000 patients.
#
#   - insert: `pgseal seed` as ehr_app through pgseal with the hospital policy (7 sealed
#     columns per patient sealed at Bind) vs through pgseal without a policy, ROUNDS times;
#   - read: `SELECT` of the sealed columns of every patient as ehr_app, through pgseal with the
#     policy (every value opened) vs the plaintext copy through pgseal without a policy;
#   - memory: pgseal's peak RSS (VmHWM) while psql streams 1,000,000 sealed rows through it
#     with a cursor (FETCH_COUNT), so the client holds little.
#
#   bash bench/protection.sh [PATIENTS] [ROUNDS]
#
# A benchmark, not a test: run it on an otherwise idle machine. Needs PostgreSQL server
# binaries and psql.

set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

PATIENTS=${1:-100000}
ROUNDS=${2:-3}
cargo build --release -q -p pgseal
PGSEAL=$PWD/target/release/pgseal

PG_PORT=$(free_port)
SEALED_PORT=$(free_port)
PLAIN_PORT=$(free_port)
trap bench_cleanup EXIT

start_cluster "$PG_PORT"
# Roles need passwords only in name here: trust authentication on loopback.
for db in sealed plain; do
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$db"
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" \
    -f policies/examples/hospital.sql >/dev/null
done

"$PGSEAL" keys generate --out "$BENCH_DIR/keyring.toml" >/dev/null
# The hospital policy with the application's hourly and daily caps lifted: this measures
# sealing, and every row written (INSERT … RETURNING id) or read here counts against them.
hospital_policy_unbudgeted "$BENCH_DIR/hospital.toml"
"$PGSEAL" serve --listen "127.0.0.1:$SEALED_PORT" --upstream "127.0.0.1:$PG_PORT" \
  --policy "$BENCH_DIR/hospital.toml" --keyring "$BENCH_DIR/keyring.toml" \
  --log-level warn 2>"$BENCH_DIR/sealed.log" &
SEALED_PID=$!
PIDS+=("$SEALED_PID")
"$PGSEAL" serve --listen "127.0.0.1:$PLAIN_PORT" --upstream "127.0.0.1:$PG_PORT" \
  --log-level warn 2>"$BENCH_DIR/plain.log" &
PIDS+=($!)
wait_port "$SEALED_PORT"
wait_port "$PLAIN_PORT"

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

seed() { # port database
  "$PGSEAL" seed --database-url "host=127.0.0.1 port=$1 user=ehr_app password=ehr_app dbname=$2" \
    --patients "$PATIENTS" --consultations-per-patient 0 --quiet >/dev/null
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
truncate_patients() { # database
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -v ON_ERROR_STOP=1 \
    -c "SET client_min_messages = warning; TRUNCATE patients CASCADE" >/dev/null
}
# Each round empties both tables and seeds them again, sealed first or plain first in turn,
# so that neither side always runs on a warmer machine; the last round's rows stay for the
# reads.
insert_sealed=(); insert_plain=()
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS: seeding $PATIENTS patients into each database…" >&2
  truncate_patients sealed; truncate_patients plain
  if (( round % 2 )); then
    t0=$(now); seed "$SEALED_PORT" sealed; t1=$(now); seed "$PLAIN_PORT" plain; t2=$(now)
    insert_sealed+=("$(seconds "$t0" "$t1")"); insert_plain+=("$(seconds "$t1" "$t2")")
  else
    t0=$(now); seed "$PLAIN_PORT" plain; t1=$(now); seed "$SEALED_PORT" sealed; t2=$(now)
    insert_plain+=("$(seconds "$t0" "$t1")"); insert_sealed+=("$(seconds "$t1" "$t2")")
  fi
done
is=$(median "${insert_sealed[@]}"); ip=$(median "${insert_plain[@]}")

QUERY="SELECT nir, last_name, first_name, birth_date, email, phone, address FROM patients"
read_all() { # port database
  PGPASSWORD=ehr_app psql -X -q -A -t -h 127.0.0.1 -p "$1" -U ehr_app -d "$2" -c "$QUERY" >/dev/null
}
# One untimed read of each first: the first scan after the inserts sets the rows' hint bits.
read_all "$SEALED_PORT" sealed; read_all "$PLAIN_PORT" plain
read_sealed=(); read_plain=()
for _ in $(seq 1 "$ROUNDS"); do
  t0=$(now); read_all "$SEALED_PORT" sealed; t1=$(now); read_all "$PLAIN_PORT" plain; t2=$(now)
  read_sealed+=("$(seconds "$t0" "$t1")"); read_plain+=("$(seconds "$t1" "$t2")")
done
rs=$(median "${read_sealed[@]}"); rp=$(median "${read_plain[@]}")

# Peak memory: grow the sealed table to 1,000,000 rows by copying its ciphertext in SQL
# (same columns, same keys: it opens), then stream it all through pgseal.
psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d sealed -v ON_ERROR_STOP=1 <<SQL >/dev/null
ALTER TABLE patients DROP CONSTRAINT patients_nir_key;
DO \$\$ BEGIN
  WHILE (SELECT count(*) FROM patients) < 1000000 LOOP
    INSERT INTO patients (nir, last_name, first_name, birth_date, sex, email, phone, address, postal_code, city, gp_name)
    SELECT nir, last_name, first_name, birth_date, sex, email, phone, address, postal_code, city, gp_name
    FROM patients LIMIT 1000000 - (SELECT count(*) FROM patients);
  END LOOP;
END \$\$;
SQL
rss_before=$(awk '/VmHWM/ {print $2}' "/proc/$SEALED_PID/status")
t0=$(now)
PGPASSWORD=ehr_app psql -X -q -A -t -h 127.0.0.1 -p "$SEALED_PORT" -U ehr_app -d sealed \
  -v FETCH_COUNT=5000 -c "$QUERY" | wc -l > "$BENCH_DIR/streamed"
t1=$(now)
rss_after=$(awk '/VmHWM/ {print $2}' "/proc/$SEALED_PID/status")
streamed=$(cat "$BENCH_DIR/streamed")

awk -v n="$PATIENTS" -v is="$is" -v ip="$ip" -v rs="$rs" -v rp="$rp" \
    -v streamed="$streamed" -v st="$(seconds "$t0" "$t1")" -v before="$rss_before" -v after="$rss_after" 'BEGIN {
  printf "\n%-34s %12s %12s %8s\n", "", "sealed", "no policy", "ratio"
  printf "%-34s %10.0f/s %10.0f/s %8.2f\n", "insert (patients, 7 sealed cols)", n/is, n/ip, ip/is
  printf "%-34s %10.0f/s %10.0f/s %8.2f\n", "read (rows, 7 sealed cols)", n/rs, n/rp, rp/rs
  printf "\nstreamed %d sealed rows in %.1f s; pgseal peak RSS %.1f MiB before, %.1f MiB after\n", streamed, st, before/1024, after/1024
}'
echo "insert seconds per round, sealed: ${insert_sealed[*]}; no policy: ${insert_plain[*]}"
echo "read seconds per round, sealed: ${read_sealed[*]}; no policy: ${read_plain[*]}"
echo "median of $ROUNDS inserts and of $ROUNDS reads; $(nproc) cores; $(date -u +%F)"

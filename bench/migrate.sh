#!/usr/bin/env bash
# Migration benchmark (issue 8): `pgseal migrate` on the hospital example's patients.
#
#   - seed PATIENTS plaintext patients straight into PostgreSQL (no pgseal), birth_date made a
#     `date` as a product that never had pgseal stores it;
#   - `pgseal migrate encrypt` (type change date -> text, 7 sealed columns per patient: a NIR
#     token, 4 deterministic and 2 randomized envelopes, CHECK constraints), timed;
#   - `pgseal keys rotate` + `pgseal migrate rotate` (every value re-sealed), timed;
#   - `pgseal migrate decrypt` (every value opened, birth_date a date again), timed, and the
#     table compared with its digest before encrypt.
#
#   bash bench/migrate.sh [PATIENTS] [BATCH_SIZE]
#
# A benchmark, not a test: run it on an otherwise idle machine. Needs PostgreSQL server
# binaries and psql.

set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

PATIENTS=${1:-1000000}
BATCH=${2:-1000}
cargo build --release -q -p pgseal
PGSEAL=${CARGO_TARGET_DIR:-$PWD/target}/release/pgseal

PG_PORT=$(free_port)
cleanup() {
  stop_cluster
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

hospital_database "$PG_PORT"

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

echo "seeding $PATIENTS plaintext patients…" >&2
"$PGSEAL" seed --database-url "$URL" --patients "$PATIENTS" --consultations-per-patient 0 \
  --quiet >/dev/null
"${PSQL[@]}" -c "ALTER TABLE patients ALTER COLUMN birth_date TYPE date USING birth_date::date"
"${PSQL[@]}" -c "VACUUM ANALYZE patients"
digest_sql="SELECT md5(string_agg(p::text, E'\n' ORDER BY id)) FROM patients p"
before=$("${PSQL[@]}" -c "$digest_sql")
size_before=$("${PSQL[@]}" -c "SELECT pg_size_pretty(pg_total_relation_size('patients'))")

# The policy with every sealed column marked migrating, as the migration asks.
sed 's/^mode = .*/&\nmigrating = true/' policies/examples/hospital.toml >"$BENCH_DIR/migrating.toml"
"$PGSEAL" keys generate --out "$BENCH_DIR/keyring.toml" >/dev/null
migrate() { # operation
  "$PGSEAL" migrate "$1" --database-url "$URL" --policy "$BENCH_DIR/migrating.toml" \
    --keyring "$BENCH_DIR/keyring.toml" --batch-size "$BATCH" --quiet
}

t0=$(now); encrypt_out=$(migrate encrypt); t1=$(now)
encrypt_s=$(seconds "$t0" "$t1")
size_after=$("${PSQL[@]}" -c "SELECT pg_size_pretty(pg_total_relation_size('patients'))")
plaintext=$("${PSQL[@]}" -c "SELECT count(*) FROM patients WHERE NOT pgseal.is_sealed(last_name)")

"$PGSEAL" keys rotate --keyring "$BENCH_DIR/keyring.toml" >/dev/null
t0=$(now); rotate_out=$(migrate rotate); t1=$(now)
rotate_s=$(seconds "$t0" "$t1")

t0=$(now); decrypt_out=$(migrate decrypt); t1=$(now)
decrypt_s=$(seconds "$t0" "$t1")
after=$("${PSQL[@]}" -c "$digest_sql")
[ "$before" = "$after" ] && identical=yes || identical=NO

echo
echo "pgseal migrate on $PATIENTS patients (7 sealed columns each), batches of $BATCH"
echo "table size: $size_before plaintext, $size_after sealed; plaintext last names left: $plaintext"
printf '| step | wall time | rows/s (wall) | pgseal summary |\n| --- | --- | --- | --- |\n'
printf '| encrypt (incl. date -> text, CHECKs) | %s s | %s | %s |\n' "$encrypt_s" "$(rate "$PATIENTS" "$encrypt_s")" "$encrypt_out"
printf '| rotate | %s s | %s | %s |\n' "$rotate_s" "$(rate "$PATIENTS" "$rotate_s")" "$rotate_out"
printf '| decrypt (incl. text -> date) | %s s | %s | %s |\n' "$decrypt_s" "$(rate "$PATIENTS" "$decrypt_s")" "$decrypt_out"
echo "decrypted table identical to the original: $identical"

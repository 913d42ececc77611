#!/usr/bin/env bash
# Instructions per keys operation, counted by callgrind: exact and repeatable, where timings on
# the 2-core VM drift by a quarter between runs. Compare two trees by running it in each.
#
#   bash bench/keys_instructions.sh [COUNT]
#
# Needs valgrind (apt-get install -y valgrind). A benchmark, not a test.

set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-2000}
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install -y valgrind" >&2; exit 1; }
cargo build --release -q -p pgseal-keys --example instructions
BIN=target/release/examples/instructions
instructions() { # operation count
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$2" 2>&1 |
    awk '/Collected/ {print $4}'
}
printf '%-10s %14s\n' operation "instr/op"
for op in open16 open1k armored16 armored1k seal16 det16 nir unnir; do
  # The run with COUNT = 0 is the set-up alone (keyring, sealer, samples), taken off.
  base=$(instructions "$op" 0); run=$(instructions "$op" "$COUNT")
  awk -v op="$op" -v b="$base" -v r="$run" -v n="$COUNT" 'BEGIN { printf "%-10s %14.0f\n", op, (r - b) / n }'
done
echo "callgrind, $COUNT operations each; $(date -u +%F)"

#!/usr/bin/env bash
# Passthrough benchmark: pgbench -S (read-only, one indexed SELECT per transaction) with
# -M simple and -M prepared, 1 and 8 clients, directly, through pgseal and through PgBouncer
# (session pooling), in one run, rounds interleaved so that drift hits every target alike (and
# the targets' order reversed every other round, so that none always runs first); each
# proxy also reaching PostgreSQL through its Unix-domain socket (pgseal-unix, pgbouncer-unix).
# Prints TPS, average latency, the ratios the foundation issue sets targets for, and each
# proxy's CPU per transaction (user + system time of its process from /proc/PID/stat over the
# run, divided by the transactions pgbench counted): the measure of issue 19. With TARGETS, the
# user-space part of it too (utime: the proxy's own code; the kernel's part is the same socket
# work for every relay and carries most of the noise), and each later target's user time beyond
# the first one's, round by round.
#
#   bash bench/passthrough.sh [SECONDS_PER_RUN] [ROUNDS]
#
# PGSEAL_OPTIONS="--session-threads 1" passes options to every pgseal target (issue 19: with
# two session threads, a policy's CPU per transaction at 8 clients came out bimodal; with one,
# steady). BASELINE=/path/to/an/older/pgseal adds it as two more targets (pgseal-before, over TCP, and
# pgseal-before-policy, with the hospital policy), for a before/after comparison in the same
# run. TARGETS="pgseal-policy pgseal-before-policy" (names separated by spaces) runs only the
# targets named, for more rounds of a comparison in the same time; one table of each target's
# TPS and CPU then replaces the ratio tables, followed by each later target's CPU over the
# first one's, round by round (paired: both ran within seconds of each other) and their median.
#
# RATE=N holds every run to N transactions per second in all (pgbench -R): each target then
# does the same work in the same time, on a machine that is not saturated, as a hospital's
# database host mostly is. A proxy's CPU per transaction then moves much less with what the
# other processes do than at full speed (where pgbench, PostgreSQL and the proxy fight for the
# two cores), and includes the cost of waking for each message, which a saturated run hides.
#
# pgseal-policy is pgseal protecting the database with the hospital example's policy (its
# tables created beside pgbench's): pgbench's statements touch no sealed table, so this
# measures what a policy costs statements that need no sealing (issue 19: within 10 %).
#
# Needs: PostgreSQL server binaries, pgbench, pgbouncer (apt-get install -y postgresql pgbouncer).
# It is a benchmark, not a test: run it on an otherwise idle machine.

set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SECONDS_PER_RUN=${1:-15}
ROUNDS=${2:-3}
KNOWN_TARGETS="direct pgseal pgbouncer pgseal-unix pgbouncer-unix pgseal-policy"
[ -n "${BASELINE:-}" ] && KNOWN_TARGETS+=" pgseal-before pgseal-before-policy"
for target in ${TARGETS:-}; do
  [[ " $KNOWN_TARGETS " == *" $target "* ]] || {
    echo "unknown target $target in TARGETS (known: $KNOWN_TARGETS)" >&2
    exit 1
  }
done
command -v pgbench >/dev/null || { echo "pgbench missing: apt-get install -y postgresql-contrib" >&2; exit 1; }
command -v pgbouncer >/dev/null || { echo "pgbouncer missing: apt-get install -y pgbouncer" >&2; exit 1; }

cargo build --release -q -p pgseal
PGSEAL=$PWD/target/release/pgseal

PG_PORT=$(free_port)
SEAL_PORT=$(free_port)
SEAL_UNIX_PORT=$(free_port)
BOUNCER_PORT=$(free_port)
BOUNCER_UNIX_PORT=$(free_port)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pidfile in "$BENCH_DIR"/pgbouncer*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  stop_cluster
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

start_cluster "$PG_PORT"
pgbench_beside_hospital 10 "$PGSEAL"

# seal NAME BINARY PORT UPSTREAM [pgseal options…]: a pgseal serving PORT, logging to
# $BENCH_DIR/NAME.log; its pid in STARTED. PGSEAL_OPTIONS (split on spaces) go to every one,
# e.g. PGSEAL_OPTIONS="--session-threads 1".
seal() {
  local name=$1 binary=$2 port=$3 upstream=$4
  shift 4
  # shellcheck disable=SC2086 # options, split on purpose
  "$binary" serve --listen "127.0.0.1:$port" --upstream "$upstream" --log-level warn \
    ${PGSEAL_OPTIONS:-} "$@" 2>"$BENCH_DIR/$name.log" &
  STARTED=$!
  PIDS+=("$STARTED")
}
POLICY=(--policy "$BENCH_DIR/hospital.toml" --keyring "$BENCH_DIR/keyring.toml")
seal pgseal "$PGSEAL" "$SEAL_PORT" "127.0.0.1:$PG_PORT"
SEAL_PID=$STARTED
seal pgseal-unix "$PGSEAL" "$SEAL_UNIX_PORT" "$BENCH_DIR/run:$PG_PORT"
SEAL_UNIX_PID=$STARTED
SEAL_POLICY_PORT=$(free_port)
seal pgseal-policy "$PGSEAL" "$SEAL_POLICY_PORT" "127.0.0.1:$PG_PORT" "${POLICY[@]}"
SEAL_POLICY_PID=$STARTED
BASELINE_PORT=$(free_port)
if [ -n "${BASELINE:-}" ]; then
  seal pgseal-before "$BASELINE" "$BASELINE_PORT" "127.0.0.1:$PG_PORT"
  BASELINE_PID=$STARTED
  BASELINE_POLICY_PORT=$(free_port)
  seal pgseal-before-policy "$BASELINE" "$BASELINE_POLICY_PORT" "127.0.0.1:$PG_PORT" "${POLICY[@]}"
  BASELINE_POLICY_PID=$STARTED
  wait_port "$BASELINE_PORT" || { cat "$BENCH_DIR/pgseal-before.log" >&2; exit 1; }
  wait_port "$BASELINE_POLICY_PORT" || { cat "$BENCH_DIR/pgseal-before-policy.log" >&2; exit 1; }
fi

# bouncer NAME PORT HOST: a PgBouncer reaching PostgreSQL at HOST (an address or the socket
# directory), its pid in $BENCH_DIR/NAME.pid.
bouncer() {
  bouncer_ini "$1" "$2" "$3"
  as_server_user pgbouncer -q "$BENCH_DIR/$1.ini" &
  PIDS+=($!)
}
[ "$(id -u)" = 0 ] && chown postgres: "$BENCH_DIR"
bouncer pgbouncer "$BOUNCER_PORT" 127.0.0.1
bouncer pgbouncer-unix "$BOUNCER_UNIX_PORT" "$BENCH_DIR/run"
for port in "$SEAL_PORT" "$SEAL_UNIX_PORT" "$SEAL_POLICY_PORT" "$BOUNCER_PORT" "$BOUNCER_UNIX_PORT"; do
  wait_port "$port" || { tail -n 5 "$BENCH_DIR"/*.log >&2; exit 1; }
done
# The process each target's CPU is read from (none for direct): PgBouncer's own, from its
# pid file (under root, $! is runuser's).
declare -A PID_OF=(
  [pgseal]=$SEAL_PID [pgseal-unix]=$SEAL_UNIX_PID [pgseal-policy]=$SEAL_POLICY_PID
  [pgbouncer]=$(cat "$BENCH_DIR/pgbouncer.pid") [pgbouncer-unix]=$(cat "$BENCH_DIR/pgbouncer-unix.pid")
)
if [ -n "${BASELINE:-}" ]; then
  PID_OF[pgseal-before]=$BASELINE_PID
  PID_OF[pgseal-before-policy]=$BASELINE_POLICY_PID
fi
TICK=$(getconf CLK_TCK)
cpu_ticks() { # pid -> utime + stime, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
user_ticks() { # pid -> utime alone: the proxy's own code, without the kernel's socket work
  awk '{print $14}' "/proc/$1/stat"
}

declare -A TPS LAT CPU USER
run() { # target port mode clients
  local out before=0 user_before=0 pid=${PID_OF[$1]:-}
  if [ -n "${TARGETS:-}" ] && [[ " $TARGETS " != *" $1 "* ]]; then return; fi
  if [ -n "$pid" ]; then
    before=$(cpu_ticks "$pid")
    user_before=$(user_ticks "$pid")
  fi
  if ! out=$(pgbench -h 127.0.0.1 -p "$2" -U postgres -S -n -M "$3" -c "$4" -j "$(( $4 < 2 ? $4 : 2 ))" \
    ${RATE:+-R "$RATE"} -T "$SECONDS_PER_RUN" bench 2>&1); then
    echo "pgbench against $1 failed: $out" >&2
    exit 1
  fi
  local tps lat transactions
  tps=$(awk '/^tps = / {print $3}' <<<"$out")
  lat=$(awk '/^latency average = / {print $4}' <<<"$out")
  transactions=$(awk '/^number of transactions actually processed: / {print $6}' <<<"$out")
  TPS["$1/$3/$4"]+="$tps "
  LAT["$1/$3/$4"]+="$lat "
  if [ -n "$pid" ]; then
    CPU["$1/$3/$4"]+="$(awk -v t="$(( $(cpu_ticks "$pid") - before ))" -v hz="$TICK" -v n="$transactions" \
      'BEGIN { printf "%.2f", t / hz / n * 1e6 }') "
    USER["$1/$3/$4"]+="$(awk -v t="$(( $(user_ticks "$pid") - user_before ))" -v hz="$TICK" -v n="$transactions" \
      'BEGIN { printf "%.2f", t / hz / n * 1e6 }') "
  fi
}
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# Each target and its port, in the order of a round.
ORDER=(direct:"$PG_PORT" pgseal:"$SEAL_PORT" pgbouncer:"$BOUNCER_PORT"
  pgseal-unix:"$SEAL_UNIX_PORT" pgbouncer-unix:"$BOUNCER_UNIX_PORT"
  pgseal-policy:"$SEAL_POLICY_PORT")
if [ -n "${BASELINE:-}" ]; then
  ORDER+=(pgseal-before:"$BASELINE_PORT" pgseal-before-policy:"$BASELINE_POLICY_PORT")
fi
for round in $(seq 1 "$ROUNDS"); do
  # Every other round runs the targets in the reverse order: a target that always ran first
  # (after the previous cell's clients, on caches the others left) would be measured apart
  # from its pair in the same way every round, and a paired ratio would carry that bias.
  order=("${ORDER[@]}")
  if (( round % 2 == 0 )); then
    order=()
    for (( i = ${#ORDER[@]} - 1; i >= 0; i-- )); do order+=("${ORDER[i]}"); done
  fi
  for mode in simple prepared; do
    for clients in 1 8; do
      for entry in "${order[@]}"; do
        run "${entry%%:*}" "${entry#*:}" "$mode" "$clients"
      done
    done
  done
  echo "round $round of $ROUNDS done" >&2
done

if [ -n "${TARGETS:-}" ]; then
  # Only some targets ran: each one's medians, no ratios between tables.
  # Every round's CPU too, in the order run: a bimodal cell shows there, not in its median.
  # The user-space part of the CPU (utime) is the proxy's own code: the kernel's part, most of
  # it, is the same socket work for every relay at the floor of system calls, and moves with the
  # machine far more than the code does.
  printf '\n%-22s %-9s %-8s %12s %12s %12s  %s\n' target mode clients TPS "CPU µs/tx" "user µs/tx" "CPU µs/tx, each round"
  for target in $TARGETS; do
    for mode in simple prepared; do
      for clients in 1 8; do
        cpu=${CPU[$target/$mode/$clients]:-}
        user=${USER[$target/$mode/$clients]:-}
        printf '%-22s %-9s %-8s %12.0f %12s %12s  %s\n' "$target" "$mode" "$clients" \
          "$(median "${TPS[$target/$mode/$clients]}")" "$([ -n "$cpu" ] && median "$cpu" || echo -)" \
          "$([ -n "$user" ] && median "$user" || echo -)" "$(xargs <<<"$cpu")"
      done
    done
  done
  # Each later target's CPU over the first one's, round by round: the two ran one after the
  # other, so what the machine was doing then weighs on both, and the median of these paired
  # ratios moves much less from run to run than the ratio of the two medians.
  # paired TITLE UNIT ARRAY AWK: for each later target, AWK's result on each round's pair of
  # values (the target's, then the first target's) and their median; ARRAY names the
  # per-round values (CPU or USER).
  paired() {
    local -n values=$3
    printf '\n%-22s %-9s %-8s %14s  %s\n' target mode clients "$1" "each round$2"
    for target in "${LATER[@]}"; do
      for mode in simple prepared; do
        for clients in 1 8; do
          pairs=$(paste -d' ' <(xargs -n1 <<<"${values[$target/$mode/$clients]:-}") \
            <(xargs -n1 <<<"${values[$FIRST/$mode/$clients]:-}") | awk "$4")
          [ -n "$pairs" ] || continue
          printf '%-22s %-9s %-8s %14s  %s\n' "$target" "$mode" "$clients" "$(median "$pairs")" "$pairs"
        done
      done
    done
  }
  read -r FIRST LATER_TARGETS <<<"$TARGETS"
  read -ra LATER <<<"$LATER_TARGETS"
  if [ ${#LATER[@]} -gt 0 ]; then
    paired "CPU / $FIRST" "" CPU 'NF == 2 && $2 > 0 { printf "%.2f ", $1 / $2 }'
    # The same pairs, for the user-space CPU: how many µs per transaction each target's own
    # code spends beyond the first one's.
    paired "user - $FIRST" " (µs)" USER 'NF == 2 { printf "%.2f ", $1 - $2 }'
  fi
  echo
  echo "median of $ROUNDS rounds of ${SECONDS_PER_RUN}s each; pgbench -S, scale 10${RATE:+, -R $RATE}; $(nproc) cores; $(date -u +%F)"
  exit 0
fi

printf '\n%-9s %-8s %7s %12s %12s %12s %9s %11s %15s\n' mode clients "" direct pgseal pgbouncer "seal/dir" "seal/bounce" "seal-dir lat"
for mode in simple prepared; do
  for clients in 1 8; do
    d=$(median "${TPS[direct/$mode/$clients]}")
    s=$(median "${TPS[pgseal/$mode/$clients]}")
    b=$(median "${TPS[pgbouncer/$mode/$clients]}")
    dl=$(median "${LAT[direct/$mode/$clients]}")
    sl=$(median "${LAT[pgseal/$mode/$clients]}")
    awk -v m="$mode" -v c="$clients" -v d="$d" -v s="$s" -v b="$b" -v dl="$dl" -v sl="$sl" 'BEGIN {
      printf "%-9s %-8s %7s %12.0f %12.0f %12.0f %9.2f %11.2f %12.1f us\n", m, c, "TPS", d, s, b, s/d, s/b, (sl-dl)*1000 }'
  done
done

# CPU per transaction of each proxy process (µs), and pgseal's over PgBouncer's.
printf '\n%-9s %-8s %12s %12s %9s %14s %14s %9s\n' mode clients "pgseal µs" "bouncer µs" "ratio" "pgseal-unix µs" "bouncer-unix µs" "ratio"
for mode in simple prepared; do
  for clients in 1 8; do
    s=$(median "${CPU[pgseal/$mode/$clients]}")
    b=$(median "${CPU[pgbouncer/$mode/$clients]}")
    su=$(median "${CPU[pgseal-unix/$mode/$clients]}")
    bu=$(median "${CPU[pgbouncer-unix/$mode/$clients]}")
    awk -v m="$mode" -v c="$clients" -v s="$s" -v b="$b" -v su="$su" -v bu="$bu" 'BEGIN {
      printf "%-9s %-8s %12.2f %12.2f %9.2f %14.2f %14.2f %9.2f\n", m, c, s, b, s/b, su, bu, su/bu }'
  done
done
# What a policy costs statements that touch no sealed table: pgseal with the hospital policy
# against pgseal without one.
printf '\n%-9s %-8s %12s %12s %14s %14s %9s\n' mode clients "pgseal TPS" "policy TPS" "pgseal µs" "policy µs" "ratio"
for mode in simple prepared; do
  for clients in 1 8; do
    s=$(median "${CPU[pgseal/$mode/$clients]}")
    p=$(median "${CPU[pgseal-policy/$mode/$clients]}")
    awk -v m="$mode" -v c="$clients" -v st="$(median "${TPS[pgseal/$mode/$clients]}")" \
      -v pt="$(median "${TPS[pgseal-policy/$mode/$clients]}")" -v s="$s" -v p="$p" 'BEGIN {
      printf "%-9s %-8s %12.0f %12.0f %14.2f %14.2f %9.2f\n", m, c, st, pt, s, p, p/s }'
  done
done
if [ -n "${BASELINE:-}" ]; then
  printf '\n%-9s %-8s %14s %14s %12s %12s %16s %16s\n' mode clients "before TPS" "pgseal TPS" "before µs" "pgseal µs" \
    "before policy µs" "pgseal policy µs"
  for mode in simple prepared; do
    for clients in 1 8; do
      awk -v m="$mode" -v c="$clients" -v bt="$(median "${TPS[pgseal-before/$mode/$clients]}")" \
        -v st="$(median "${TPS[pgseal/$mode/$clients]}")" -v bc="$(median "${CPU[pgseal-before/$mode/$clients]}")" \
        -v sc="$(median "${CPU[pgseal/$mode/$clients]}")" \
        -v bp="$(median "${CPU[pgseal-before-policy/$mode/$clients]}")" \
        -v sp="$(median "${CPU[pgseal-policy/$mode/$clients]}")" 'BEGIN {
        printf "%-9s %-8s %14.0f %14.0f %12.2f %12.2f %16.2f %16.2f\n", m, c, bt, st, bc, sc, bp, sp }'
    done
  done
fi
echo
echo "median of $ROUNDS rounds of ${SECONDS_PER_RUN}s each; pgbench -S, scale 10${RATE:+, -R $RATE}; $(nproc) cores; $(date -u +%F)"

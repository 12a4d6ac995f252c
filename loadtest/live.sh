#!/usr/bin/env bash
# Live counts under write load: the hot-article write benchmark (loadtest/wrk.lua, `write-hot`)
# run alone and while examples/live_streams.rs holds STREAMS Server-Sent-Event streams on that
# article, taking turns (alone, with, alone, with, alone) after a warm-up, so that the drift of
# a growing database falls on both sides alike. Prints the writes kept (mean with streams / mean
# alone), the service's memory per stream, the delivery lag from commit to event, each event's
# fan-out to all streams, and where the CPU went (ticks of the service, PostgreSQL, the
# streams' client and the whole machine per acknowledged write), since everything shares this
# machine's cores.
#
#   bash loadtest/live.sh                          # 5,000 streams, 15 s per run
#   STREAMS=1000 DURATION=10 bash loadtest/live.sh
#   BENCH_SKIP_BUILD=1 bash loadtest/live.sh       # reuse the binaries already built
#
# Needs what loadtest/run.sh needs: PostgreSQL (DATABASE_SERVER), psql and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."

STREAMS=${STREAMS:-5000}
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-64}
SERVER=${DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
PORT=${BENCH_PORT:-18390}
BASE="http://127.0.0.1:$PORT"
DB="rr_live_$$"
SCRATCH=$(mktemp -d)

for tool in wrk psql; do
    command -v "$tool" >/dev/null || { echo "live: $tool is missing (apt-get install wrk postgresql-client)" >&2; exit 1; }
done

service_pid=""
client_pid=""
cleanup() {
    [[ -n "$client_pid" ]] && kill "$client_pid" 2>/dev/null || true
    [[ -n "$service_pid" ]] && kill "$service_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    psql "$SERVER/postgres" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
    echo "building the release binary and the streams' client…" >&2
    cargo build --release --locked --quiet
    cargo build --release --locked --quiet --example live_streams
fi

# CPU ticks (user + system) of one process, of every PostgreSQL process, of the whole machine.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() {
    local total=0 pid
    for pid in $(pgrep -x postgres || true); do total=$((total + $(ticks "$pid"))); done
    echo "$total"
}
machine_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }  # busy, all cores

psql "$SERVER/postgres" -qc "create database $DB" >/dev/null
# High rate limits: the benchmark measures the write path and the streams, not the limiter. Each
# write comes from a random X-Forwarded-For address, trusted from the loopback.
RATE_LIMIT_READ_BURST=1000000 RATE_LIMIT_READS_PER_MINUTE=1000000 \
RATE_LIMIT_WRITES_PER_MINUTE=1000000 RATE_LIMIT_WRITE_BURST=1000000 \
RATE_LIMIT_ARTICLE_WRITES_PER_HOUR=100000000 TRUSTED_PROXIES=127.0.0.1/32 \
LIVE_MAX_STREAMS=$((STREAMS + 100)) DATABASE_URL="$SERVER/$DB" LISTEN_ADDR="127.0.0.1:$PORT" \
RUST_LOG=warn "${SERVICE:-./target/release/reader-reactions}" >"$SCRATCH/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 100); do curl -fs "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "$BASE/readyz" >/dev/null || { echo "live: the service did not start" >&2; cat "$SCRATCH/service.log" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true

# One wrk run on the hot article; prints "writes/s p99 service-ticks postgres-ticks client-ticks
# machine-busy-ticks" (the client's ticks are 0 when no client runs).
writes() {
    local s0 p0 c0 m0 s1 p1 c1 m1 out
    s0=$(ticks "$service_pid"); p0=$(pg_ticks); c0=$([[ -n "$client_pid" ]] && ticks "$client_pid" || echo 0)
    m0=$(machine_ticks)
    out=$(SCENARIO=write-hot wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s loadtest/wrk.lua "$BASE" 2>&1)
    s1=$(ticks "$service_pid"); p1=$(pg_ticks); c1=$([[ -n "$client_pid" ]] && ticks "$client_pid" || echo 0)
    m1=$(machine_ticks)
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        echo "live: the write run had errors:" >&2
        echo "$out" >&2
        exit 1
    fi
    local rate p99
    rate=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    p99=$(awk '$1 == "99%"{print $2}' <<<"$out")
    echo "$rate $p99 $((s1 - s0)) $((p1 - p0)) $((c1 - c0)) $((m1 - m0))"
}

echo "warming up…" >&2
writes >/dev/null

# One run with the streams open: opens them, writes, waits for the client's report.
with_streams() {
    ./target/release/examples/live_streams --base "$BASE" --article hot --streams "$STREAMS" \
        --seconds $((DURATION + 5)) --pid "$service_pid" >"$SCRATCH/client.log" 2>&1 &
    client_pid=$!
    for _ in $(seq 600); do grep -q "^opened" "$SCRATCH/client.log" && break; sleep 0.1; done
    grep -q "^opened" "$SCRATCH/client.log" || { echo "live: the streams did not open" >&2; cat "$SCRATCH/client.log" >&2; exit 1; }
    sleep 3
    writes >"$SCRATCH/with"
    wait "$client_pid"
    client_pid=""
    cat "$SCRATCH/client.log" >&2
    cat "$SCRATCH/with"
}

hz=$(getconf CLK_TCK)
report() {
    local name=$1 rate p99 s p c m
    read -r rate p99 s p c m <<<"$2"
    awk -v n="$name" -v r="$rate" -v l="$p99" -v s="$s" -v p="$p" -v c="$c" -v m="$m" -v d="$DURATION" -v hz="$hz" \
        'BEGIN{us = 1e6 / hz / (r * d); printf "%-20s %6.0f writes/s  p99 %-9s  CPU per write: service %4.0f µs, PostgreSQL %4.0f µs, client %3.0f µs, machine busy %4.0f µs\n", n, r, l, s * us, p * us, c * us, m * us}'
}

declare -a ALONE=() WITH=()
for turn in alone with alone with alone; do
    echo "writes $turn…" >&2
    if [[ $turn == alone ]]; then ALONE+=("$(writes)"); else WITH+=("$(with_streams)"); fi
done

echo
for run in "${ALONE[@]}"; do report "alone" "$run"; done
for run in "${WITH[@]}"; do report "with $STREAMS streams" "$run"; done
printf '%s\n' "${ALONE[@]}" | awk -v with="$(printf '%s\n' "${WITH[@]}" | awk '{s += $1} END {print s / NR}')" \
    '{s += $1} END {printf "writes kept with the streams open: %.2f (mean %.0f with, %.0f alone)\n", with / (s / NR), with, s / NR}'

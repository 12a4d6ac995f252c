#!/usr/bin/env bash
# The reader-reactions benchmark suite. Builds the release binary, starts it on a fresh
# PostgreSQL database and drives it with wrk; measures the anchors (pgbench's naive hot-row
# write, the service's own /healthz) in the same run; checks after every write scenario that
# counts equal rows and that every acknowledged write was stored once; prints one table.
#
#   bash bench/run.sh                 # DURATION=10s CONNECTIONS=64 by default
#   DURATION=30s bash bench/run.sh
#   BENCH_SKIP_BUILD=1 bash bench/run.sh   # reuse target/release/reader-reactions
#
# Needs: PostgreSQL (DATABASE_SERVER, default postgres://postgres@127.0.0.1:5432), pgbench and
# psql (postgresql-client), wrk (`apt-get install wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-16}
SERVER=${DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
PORT=${BENCH_PORT:-18181}
BASE="http://127.0.0.1:$PORT"
RUN_ID="$$"
DB="rr_bench_$RUN_ID"
NAIVE_DB="rr_bench_naive_$RUN_ID"

for tool in wrk pgbench psql; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk postgresql-client)" >&2; exit 1; }
done

service_pid=""
cleanup() {
    [[ -n "$service_pid" ]] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
    psql "$SERVER/postgres" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
    psql "$SERVER/postgres" -qc "drop database if exists $NAIVE_DB with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
    echo "building the release binary…" >&2
    cargo build --release --locked --quiet
fi

declare -a ROWS=()
row() { ROWS+=("$1"); }

# Peak resident memory of the service while a command runs, in MiB.
with_peak_rss() {
    local peak_file
    peak_file=$(mktemp)
    echo 0 >"$peak_file"
    (
        peak=0
        while kill -0 "$service_pid" 2>/dev/null; do
            rss=$(awk '/VmRSS/ {print $2}' "/proc/$service_pid/status" 2>/dev/null || echo 0)
            ((rss > peak)) && peak=$rss && echo "$peak" >"$peak_file"
            sleep 0.1
        done
    ) &
    local sampler=$!
    "$@"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    PEAK_RSS_MIB=$(($(cat "$peak_file") / 1024))
    rm -f "$peak_file"
}

# Runs one wrk scenario; sets RESULT (the Lua script's RESULT line).
run_wrk() {
    local scenario=$1
    local out
    out=$(SCENARIO=$scenario wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" -s bench/wrk.lua "$BASE" 2>&1)
    RESULT=$(grep '^RESULT' <<<"$out" || { echo "$out" >&2; exit 1; })
}

field() { sed -E "s/.*$1=([^ ]+).*/\1/" <<<"$RESULT"; }

sql() { psql "$SERVER/$DB" -Atqc "$1"; }

# Counts equal rows everywhere, and every acknowledged write is a row. Each write uses a new
# visitor, so rows = acknowledged writes + the writes still in flight when wrk stopped (at most
# one per connection: committed, but their answers were never read).
check_writes() {
    local like=$1 acked=$2
    local mismatches rows
    mismatches=$(sql "select count(*) from article_reaction_counts c
        full join (select article_id, reaction, count(*) n from reactions group by 1, 2) r using (article_id, reaction)
        where coalesce(c.count, 0) <> coalesce(r.n, 0)")
    rows=$(sql "select count(*) from reactions where article_id like '$like'")
    if [[ "$mismatches" == 0 ]] && ((rows >= acked && rows - acked <= CONNECTIONS)); then
        CHECK="ok: $acked acknowledged, all stored once ($((rows - acked)) in flight at the end); counts = rows"
    else
        CHECK="FAILED: $rows rows vs $acked acknowledged, $mismatches count mismatches"
        FAILED=1
    fi
}

scenario() {
    local name=$1 wrk_scenario=$2 like=${3:-}
    with_peak_rss run_wrk "$wrk_scenario"
    local check="-"
    if [[ -n "$like" ]]; then
        check_writes "$like" "$(field acked_writes)"
        check=$CHECK
    fi
    printf '%s: %s req/s\n' "$name" "$(field rps)" >&2
    row "| $name | $(field rps) | $(field p50_ms) | $(field p99_ms) | $PEAK_RSS_MIB | $(field failed) | $check |"
    LAST_RPS=$(field rps)
}

FAILED=0

echo "anchor: pgbench, naive one-statement write on one hot article…" >&2
psql "$SERVER/postgres" -qc "create database $NAIVE_DB" >/dev/null
# Each migration in a transaction of its own, as sqlx applies them.
for migration in migrations/*.sql; do
    psql "$SERVER/$NAIVE_DB" -q -v ON_ERROR_STOP=1 --single-transaction -f "$migration" >/dev/null
done
pgbench_out=$(pgbench -n -M prepared -c "$PGBENCH_CLIENTS" -j 2 -T "${DURATION%s}" -f bench/naive.sql "$SERVER/$NAIVE_DB" 2>&1)
PGBENCH_TPS=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$pgbench_out" | head -n1)
PGBENCH_TPS=${PGBENCH_TPS%.*}
PGBENCH_LAT=$(sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' <<<"$pgbench_out")
row "| pgbench naive hot-row write ($PGBENCH_CLIENTS clients, prepared, no HTTP) | $PGBENCH_TPS | avg $PGBENCH_LAT | - | - | - | - |"

echo "starting the service…" >&2
psql "$SERVER/postgres" -qc "create database $DB" >/dev/null
DATABASE_URL="$SERVER/$DB" LISTEN_ADDR="127.0.0.1:$PORT" TRUSTED_PROXIES=127.0.0.1/32 \
    LOG_FORMAT=json RUST_LOG=warn ./target/release/reader-reactions >/tmp/rr-bench-service.log 2>&1 &
service_pid=$!
for _ in $(seq 1 100); do curl -fs "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$BASE/readyz" >/dev/null

scenario "service /healthz" healthz
HEALTHZ_RPS=$LAST_RPS
scenario "writes, one hot article" write-hot "hot"
HOT_RPS=$LAST_RPS
HOT_P99=$(field p99_ms)
scenario "writes, 10,000 articles" write-spread "spread-%"
scenario "anonymous GET, one article" get
GET_RPS=$LAST_RPS
scenario "batch GET, 50 articles" batch
BATCH_RPS=$LAST_RPS
scenario "90% GET / 10% PUT, 100 articles" mix "mix-%"
scenario "dashboards: top 10 (all, by reaction), totals over the last 24 h of the writes above" stats

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

cpu=$(sed -nE 's/^model name\s*: (.*)/\1/p' /proc/cpuinfo | head -n1)
pg=$(psql "$SERVER/postgres" -Atqc "show server_version")
cat <<TABLE

Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), PostgreSQL $pg on the same host.
Run: wrk $WRK_THREADS thread(s), $CONNECTIONS connections, $DURATION per scenario; pgbench $PGBENCH_CLIENTS clients; $(date -u +%Y-%m-%dT%H:%MZ).

| scenario | req/s | p50 ms | p99 ms | peak RSS MiB | non-2xx | check |
|---|---:|---:|---:|---:|---:|---|
$(printf '%s\n' "${ROWS[@]}")

| target | measured | goal |
|---|---:|---:|
| hot-article writes / pgbench naive | $(ratio "$HOT_RPS" "$PGBENCH_TPS") | ≥ 2.0 |
| hot-article write p99 | $HOT_P99 ms | ≤ 25 ms |
| anonymous GET / healthz | $(ratio "$GET_RPS" "$HEALTHZ_RPS") | ≥ 0.85 |
| batch GET of 50 / healthz | $(ratio "$BATCH_RPS" "$HEALTHZ_RPS") | ≥ 0.3 |
TABLE
exit "$FAILED"

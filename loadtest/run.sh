#!/usr/bin/env bash
# The reader-reactions benchmark suite. Measures the anchors and the service in one run and
# prints one table of figures and ratios (BENCHMARKS.md explains each).
#
# Anchors, each a fixed workload on its own minimal schema in a scratch database
# (loadtest/anchors/), never on the service's schema:
#   - pgbench, naive write: one statement per reaction (insert the visitor's row, bump the count
#     row), on one hot article and spread over 10,000 articles;
#   - pgbench, set-based ceiling: one statement inserts 100 reactions and adds them to the counts
#     and the hourly and daily rollups, on one hot article and spread over 10,000 articles;
#   - SQLite, naive write: one transaction per reaction on the same minimal schema, with the
#     embedded store's own settings (examples/sqlite_anchor.rs);
#   - the service's own /healthz, through the whole HTTP stack.
# The service: the release binary with its defaults (TRUSTED_PROXIES set to the loopback, so
# each request's random X-Forwarded-For is a client of its own), on a fresh PostgreSQL database
# and then on a fresh SQLite file, driven by wrk and loadtest/wrk.lua.
#
# After every write scenario it checks that every acknowledged write is stored exactly once,
# that counts equal rows and that the rollups equal the rows (examples/bench_check.rs, the test
# suite's queries). A scenario that acknowledged nothing, answered anything but 2xx/304, had
# socket errors or failed a check fails the run: the script says so and exits non-zero.
#
#   bash loadtest/run.sh                        # 10 s per scenario
#   DURATION=30s bash loadtest/run.sh
#   BENCH_SKIP_BUILD=1 bash loadtest/run.sh     # reuse the binaries already built
#   BENCH_SKIP_BUILD=1 BENCH_SERVICE=/tmp/old-build bash loadtest/run.sh
#                                               # another build of the service (before/after)
#
# Needs: PostgreSQL (DATABASE_SERVER, default postgres://postgres@127.0.0.1:5432), pgbench and
# psql (postgresql-client), wrk (`apt-get install wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WRK_THREADS=${WRK_THREADS:-1}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-16}
SERVER=${DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
PORT=${BENCH_PORT:-18181}
BASE="http://127.0.0.1:$PORT"
RUN_ID="$$"
DB="rr_bench_$RUN_ID"
ANCHOR_DB="rr_bench_anchor_$RUN_ID"
SCRATCH=$(mktemp -d)
SECONDS_PER_RUN=${DURATION%s}

for tool in wrk pgbench psql; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk postgresql-client)" >&2; exit 1; }
done

service_pid=""
stop_service() {
    if [[ -n "$service_pid" ]]; then
        kill "$service_pid" 2>/dev/null || true
        wait "$service_pid" 2>/dev/null || true
        service_pid=""
    fi
}
cleanup() {
    stop_service
    psql "$SERVER/postgres" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
    psql "$SERVER/postgres" -qc "drop database if exists $ANCHOR_DB with (force)" >/dev/null 2>&1 || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
    echo "building the release binary, the SQLite anchor and the checker…" >&2
    cargo build --release --locked --quiet
    cargo build --release --locked --quiet --example sqlite_anchor
    cargo build --locked --quiet --example bench_check
fi
SERVICE=${BENCH_SERVICE:-./target/release/reader-reactions}
SQLITE_ANCHOR=./target/release/examples/sqlite_anchor
CHECK=./target/debug/examples/bench_check

declare -a ROWS=()
row() { ROWS+=("$1"); }
FAILED=0
fail() { echo "bench: FAILED: $*" >&2; FAILED=1; }

# --- anchors ---------------------------------------------------------------------------------

# Runs one pgbench anchor script on a fresh database of the minimal schema; sets TPS.
pgbench_anchor() {
    local script=$1
    psql "$SERVER/postgres" -qc "drop database if exists $ANCHOR_DB with (force)" >/dev/null
    psql "$SERVER/postgres" -qc "create database $ANCHOR_DB" >/dev/null
    psql "$SERVER/$ANCHOR_DB" -q -v ON_ERROR_STOP=1 -f loadtest/anchors/schema.sql >/dev/null
    local out
    out=$(pgbench -n -M prepared -c "$PGBENCH_CLIENTS" -j 2 -T "$SECONDS_PER_RUN" -f "loadtest/anchors/$script" "$SERVER/$ANCHOR_DB" 2>&1)
    TPS=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$out" | head -n1)
    TPS=${TPS%.*}
    if [[ -z "$TPS" ]] || grep -q 'number of failed transactions: [1-9]' <<<"$out"; then
        echo "$out" >&2
        fail "the pgbench anchor $script"
        TPS=0
    fi
}

echo "anchor: pgbench naive write, one hot article…" >&2
pgbench_anchor naive-hot.sql
NAIVE_HOT=$TPS
row "| anchor: pgbench naive write, one hot article ($PGBENCH_CLIENTS clients) | $NAIVE_HOT | - | - | - | - | - |"
echo "anchor: pgbench naive write, 10,000 articles…" >&2
pgbench_anchor naive-spread.sql
NAIVE_SPREAD=$TPS
row "| anchor: pgbench naive write, 10,000 articles ($PGBENCH_CLIENTS clients) | $NAIVE_SPREAD | - | - | - | - | - |"
echo "anchor: pgbench set-based ceiling, 100 reactions a statement…" >&2
pgbench_anchor ceiling.sql
CEILING=$((TPS * 100))
row "| anchor: pgbench set-based ceiling, reactions/s ($PGBENCH_CLIENTS clients × 100 a statement) | $CEILING | - | - | - | - | - |"
echo "anchor: pgbench set-based ceiling, 10,000 articles…" >&2
pgbench_anchor ceiling-spread.sql
CEILING_SPREAD=$((TPS * 100))
row "| anchor: pgbench set-based ceiling, 10,000 articles, reactions/s ($PGBENCH_CLIENTS clients × 100 a statement) | $CEILING_SPREAD | - | - | - | - | - |"
psql "$SERVER/postgres" -qc "drop database if exists $ANCHOR_DB with (force)" >/dev/null

sqlite_anchor() {
    local articles=$1 out
    rm -f "$SCRATCH"/anchor.db*
    out=$("$SQLITE_ANCHOR" "$SCRATCH/anchor.db" "$SECONDS_PER_RUN" 4 "$articles" 2>&1) || { echo "$out" >&2; fail "the SQLite anchor"; }
    TPS=$(sed -nE 's/^RESULT tps=([0-9]+).*/\1/p' <<<"$out")
    TPS=${TPS:-0}
}
echo "anchor: SQLite naive write…" >&2
sqlite_anchor 1
SQLITE_NAIVE_HOT=$TPS
row "| anchor: SQLite naive write, one hot article (a transaction per reaction) | $SQLITE_NAIVE_HOT | - | - | - | - | - |"
sqlite_anchor 10000
SQLITE_NAIVE_SPREAD=$TPS
row "| anchor: SQLite naive write, 10,000 articles | $SQLITE_NAIVE_SPREAD | - | - | - | - | - |"

# --- the service -----------------------------------------------------------------------------

start_service() {
    local url=$1
    # Rate limits high enough that the random client addresses never meet them (the limiters
    # still run and cost what they cost); everything else at its default.
    DATABASE_URL="$url" LISTEN_ADDR="127.0.0.1:$PORT" TRUSTED_PROXIES=127.0.0.1/32 \
        RATE_LIMIT_WRITES_PER_MINUTE=1000000 RATE_LIMIT_WRITE_BURST=1000000 \
        RATE_LIMIT_ARTICLE_WRITES_PER_HOUR=1000000 RATE_LIMIT_STATS_PER_MINUTE=1000000 \
        RATE_LIMIT_STATS_BURST=1000000 \
        LOG_FORMAT=json RUST_LOG=warn "$SERVICE" >"$SCRATCH/service.log" 2>&1 &
    service_pid=$!
    for _ in $(seq 1 100); do curl -fs "$BASE/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
    cat "$SCRATCH/service.log" >&2
    echo "bench: the service did not start on $url" >&2
    exit 1
}

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
    local scenario=$1 connections=$2 out
    out=$(SCENARIO=$scenario HOT_ARTICLE=${HOT_ARTICLE:-hot} wrk -t"$WRK_THREADS" -c"$connections" -d"$DURATION" -s loadtest/wrk.lua "$BASE" 2>&1)
    RESULT=$(grep '^RESULT' <<<"$out" || { echo "$out" >&2; exit 1; })
}

field() { sed -E "s/.*$1=([^ ]+).*/\1/" <<<"$RESULT"; }

# After a write scenario: rows matching the scenario's articles = acknowledged writes plus the
# writes in flight when wrk stopped (at most one per connection: committed, answer never read);
# counts = rows; rollups = rows; (PostgreSQL) every article's held bound covers its counts.
check_writes() {
    local url=$1 pattern=$2 acked=$3 connections=$4 out rows counts rollups bounds
    out=$("$CHECK" "$url" "$pattern")
    rows=$(sed -E 's/.*rows=([0-9]+).*/\1/' <<<"$out")
    counts=$(sed -E 's/.*count_mismatches=([0-9]+).*/\1/' <<<"$out")
    rollups=$(sed -E 's/.*rollup_mismatches=([0-9]+).*/\1/' <<<"$out")
    bounds=$(sed -E 's/.*bound_shortfalls=([0-9]+).*/\1/' <<<"$out")
    if ((acked > 0 && rows >= acked && rows - acked <= connections && counts == 0 && rollups == 0 && bounds == 0)); then
        CHECK_TEXT="ok: $acked acknowledged, all stored once ($((rows - acked)) in flight at the end); counts = rows; rollups = rows"
    else
        CHECK_TEXT="FAILED: $rows rows vs $acked acknowledged, $counts count and $rollups rollup mismatches, $bounds held bounds below the counts"
        fail "$CHECK_TEXT"
    fi
}

# One scenario: name, wrk scenario, connections, and for writes the database URL and the
# articles' LIKE pattern. Sets LAST_RPS and LAST_P99.
scenario() {
    local name=$1 wrk_scenario=$2 connections=$3 url=${4:-} pattern=${5:-}
    with_peak_rss run_wrk "$wrk_scenario" "$connections"
    local check="-" failed socket_errors ok
    failed=$(field failed)
    socket_errors=$(field socket_errors)
    ok=$(field ok)
    if ((failed > 0 || socket_errors > 0 || ok == 0)); then
        fail "$name: $ok answered, $failed non-2xx, $socket_errors socket errors"
    fi
    if [[ -n "$pattern" ]]; then
        check_writes "$url" "$pattern" "$(field acked_writes)" "$connections"
        check=$CHECK_TEXT
    fi
    printf '%s: %s req/s\n' "$name" "$(field rps)" >&2
    row "| $name | $(field rps) | $(field p50_ms) | $(field p99_ms) | $PEAK_RSS_MIB | $failed + $socket_errors | $check |"
    LAST_RPS=$(field rps)
    LAST_P99=$(field p99_ms)
}

echo "the service on PostgreSQL…" >&2
psql "$SERVER/postgres" -qc "create database $DB" >/dev/null
PG_URL="$SERVER/$DB"
start_service "$PG_URL"
scenario "service /healthz (64 connections)" healthz 64
HEALTHZ_RPS=$LAST_RPS
scenario "PostgreSQL: writes, one hot article, 64 connections" write-hot 64 "$PG_URL" "hot"
HOT64_RPS=$LAST_RPS
HOT64_P99=$LAST_P99
# An article of its own, so that its check counts only its own rows, not the 64 connections' too.
HOT_ARTICLE=hot-256 scenario "PostgreSQL: writes, one hot article, 256 connections" write-hot 256 "$PG_URL" "hot-256"
HOT256_RPS=$LAST_RPS
scenario "PostgreSQL: writes, 10,000 articles, 256 connections" write-spread 256 "$PG_URL" "spread-%"
SPREAD256_RPS=$LAST_RPS
scenario "anonymous GET, one article (64 connections)" get 64
GET_RPS=$LAST_RPS
scenario "batch GET, 50 articles (64 connections)" batch 64
BATCH_RPS=$LAST_RPS
scenario "90% GET / 10% PUT, 100 articles (64 connections)" mix 64 "$PG_URL" "mix-%"
# Dashboards are read by a few editors, not by 64 clients at once: 8 connections.
scenario "dashboards: top 10 (all, by reaction), totals over the last 24 h of the writes above (8 connections)" stats 8
stop_service

echo "the service on SQLite…" >&2
SQLITE_URL="sqlite://$SCRATCH/service.db"
start_service "$SQLITE_URL"
scenario "SQLite: writes, one hot article, 64 connections" write-hot 64 "$SQLITE_URL" "hot"
SQLITE_HOT_RPS=$LAST_RPS
scenario "SQLite: writes, 10,000 articles, 64 connections" write-spread 64 "$SQLITE_URL" "spread-%"
SQLITE_SPREAD_RPS=$LAST_RPS
stop_service

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
best() { printf '%s\n' "$@" | sort -n | tail -n1; }

cpu=$(sed -nE 's/^model name\s*: (.*)/\1/p' /proc/cpuinfo | head -n1)
pg=$(psql "$SERVER/postgres" -Atqc "show server_version")
cat <<TABLE

Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), PostgreSQL $pg on the same host.
Run: wrk $WRK_THREADS thread(s), $DURATION per scenario; pgbench $PGBENCH_CLIENTS clients; $(date -u +%Y-%m-%dT%H:%MZ).

| scenario | req/s | p50 ms | p99 ms | peak RSS MiB | non-2xx + socket errors | check |
|---|---:|---:|---:|---:|---:|---|
$(printf '%s\n' "${ROWS[@]}")

| figure | measured | target |
|---|---:|---:|
| hot article, 64 connections / naive hot | $(ratio "$HOT64_RPS" "$NAIVE_HOT") | ≥ 2.0 |
| hot article, 64 connections, p99 | $HOT64_P99 ms | ≤ 25 ms |
| hot article, 256 connections / naive hot | $(ratio "$HOT256_RPS" "$NAIVE_HOT") | ≥ 3.0 |
| 10,000 articles, 256 connections / naive spread | $(ratio "$SPREAD256_RPS" "$NAIVE_SPREAD") | ≥ 2.0 |
| best write figure / set-based ceiling | $(ratio "$(best "$HOT64_RPS" "$HOT256_RPS" "$SPREAD256_RPS")" "$CEILING") | report; aim ≥ 0.3 |
| set-based ceiling, 10,000 articles / naive spread | $(ratio "$CEILING_SPREAD" "$NAIVE_SPREAD") | report |
| 10,000 articles, 256 connections / set-based ceiling, 10,000 articles | $(ratio "$SPREAD256_RPS" "$CEILING_SPREAD") | report |
| anonymous GET / healthz | $(ratio "$GET_RPS" "$HEALTHZ_RPS") | ≥ 0.85 |
| batch GET of 50 / healthz | $(ratio "$BATCH_RPS" "$HEALTHZ_RPS") | ≥ 0.3 |
| SQLite: hot article / SQLite naive hot | $(ratio "$SQLITE_HOT_RPS" "$SQLITE_NAIVE_HOT") | report |
| SQLite: 10,000 articles / SQLite naive spread | $(ratio "$SQLITE_SPREAD_RPS" "$SQLITE_NAIVE_SPREAD") | report |
TABLE
if ((FAILED)); then
    echo "bench: a workload or a check FAILED (see above): these figures do not count" >&2
fi
exit "$FAILED"

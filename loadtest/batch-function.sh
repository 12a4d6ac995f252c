#!/usr/bin/env bash
# The write batch alone, in the database: the time `reactions_apply_batch` (the function every
# PostgreSQL write batch of the service is one call of) takes per call, without HTTP, the
# service or the load generator, and where that time goes, statement by statement.
#
# A scratch database gets the service's migrations (migrations/*.sql, in order, each in a
# transaction as sqlx applies them) and ROWS reactions on 100,000 other articles, with their
# counts and rollups, so that the indexes have the size of a site in use. Then pgbench calls the
# function from one client, with fresh visitor keys each time, in two shapes:
#   - hot:    HOT_SIZE (33) sets on one article, the batch of a hot article at 64 connections;
#   - spread: SPREAD_SIZE (64) sets on as many random articles of 10,000.
# Each shape runs ROUNDS times, alternating, RUN_SECONDS (10) each; the figure is the function's
# own time per call (pg_stat_user_functions, track_functions = pl), in µs, and per change.
# Last, one call of each shape under auto_explain (nested statements) prints each statement's
# time.
#
#   bash loadtest/batch-function.sh
#   ROWS=3000000 ROUNDS=3 RUN_SECONDS=20 bash loadtest/batch-function.sh
#   KEEP=1 bash loadtest/batch-function.sh   # keep the database (its name is printed)
#
# Needs: PostgreSQL (DATABASE_SERVER, default postgres://postgres@127.0.0.1:5432), psql and
# pgbench (postgresql-client). One client on an otherwise quiet machine: compare builds or
# schemas by alternating them within one run (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER=${DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-2}
SECONDS_PER_RUN=${RUN_SECONDS:-10}
HOT_SIZE=${HOT_SIZE:-33}
SPREAD_SIZE=${SPREAD_SIZE:-64}
DB="rr_batch_fn_$$"
URL="$SERVER/$DB"
SCRATCH=$(mktemp -d)

for tool in psql pgbench; do
    command -v "$tool" >/dev/null || { echo "batch-function: $tool is missing (apt-get install postgresql-client)" >&2; exit 1; }
done
cleanup() {
    [[ -n "${KEEP:-}" ]] || psql "$SERVER/postgres" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

psql "$SERVER/postgres" -qc "create database $DB" >/dev/null
for migration in migrations/*.sql; do
    PGOPTIONS="-c client_min_messages=warning" psql "$URL" -q -1 -v ON_ERROR_STOP=1 -f "$migration" >/dev/null
done
psql "$URL" -qc "alter database $DB set track_functions = 'pl'" >/dev/null

echo "filling $ROWS reactions on 100,000 articles…" >&2
# The reactions through their rollup triggers (the rollups follow), then the counts from them
# (the held bounds follow), all 40 days old: outside the hours and days the calls write to.
psql "$URL" -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
insert into reactions (article_id, visitor_key, reaction, updated_at)
select 'fill-' || (g % 100000), sha256(int8send(-g)), (enum_range(null::reaction))[1 + (g % 7)::int],
       now() - interval '40 days' - (g % 1000) * interval '1 minute'
from generate_series(1, $ROWS) as g;
insert into article_reaction_counts (article_id, reaction, count)
select article_id, reaction, count(*) from reactions group by article_id, reaction order by 1, 2;
vacuum analyze;
SQL

# One call: SIZE changes, on the article 'hot' or on random ones of 10,000, sorted by (article,
# visitor) as the service sends them, each a new visitor with a random reaction and network.
cat >"$SCRATCH/call.sql" <<'SQL'
\set v random(1, 9000000000000000000)
select count(*) from (
    select array_agg(a order by a, k) as a, array_agg(k order by a, k) as v,
           array_agg(r order by a, k) as t, array_agg(n order by a, k) as n
    from (select case when :spread = 1 then 'spread-' || (1 + abs(hashint8(:v::bigint + g)) % 10000)
                      else 'hot' end as a,
                 sha256(int8send(:v::bigint + g)) as k,
                 ((enum_range(null::reaction))[1 + ((g * 7919 + :v::bigint) % 7)::int])::text as r,
                 substr(sha256(int8send(:v::bigint - g)), 1, 16) as n
          from generate_series(1, :size) as g) as changes
) as batch, lateral reactions_apply_batch(batch.a, batch.v, batch.t, batch.n, 29298);
SQL

function_time() {
    psql "$URL" -Atc "select coalesce(sum(calls), 0) || ' ' || coalesce(sum(total_time), 0)
                      from pg_stat_user_functions where funcname = 'reactions_apply_batch'"
}
# One shape for RUN_SECONDS: prints its line.
measure() {
    local name=$1 spread=$2 size=$3 calls0 time0 calls1 time1
    read -r calls0 time0 < <(function_time)
    pgbench -n -c 1 -T "$SECONDS_PER_RUN" -D spread="$spread" -D size="$size" -f "$SCRATCH/call.sql" "$URL" >/dev/null 2>&1
    sleep 0.6 # the statistics collector's flush
    read -r calls1 time1 < <(function_time)
    awk -v name="$name" -v size="$size" -v c="$((calls1 - calls0))" -v t0="$time0" -v t1="$time1" 'BEGIN {
        us = (t1 - t0) * 1000 / c
        printf "| %s, %d changes a call | %d | %.0f | %.1f |\n", name, size, c, us, us / size }'
}

echo "| batch | calls | µs per call | µs per change |"
echo "|---|---:|---:|---:|"
measure "warm-up hot" 0 "$HOT_SIZE" >/dev/null
measure "warm-up spread" 1 "$SPREAD_SIZE" >/dev/null
for _ in $(seq 1 "$ROUNDS"); do
    measure "hot article" 0 "$HOT_SIZE"
    measure "spread over 10,000 articles" 1 "$SPREAD_SIZE"
done

# Where a call's time goes: one call of each shape, after eleven that settle the session's plans
# (plpgsql plans a statement anew for its first five runs), with every statement inside the
# function and its triggers timed by auto_explain. Its instrumentation makes everything slower
# than the calls above: read the statements' times as shares of the call.
explain_one() {
    local spread=$1 size=$2
    {
        echo "load 'auto_explain';"
        echo "set auto_explain.log_min_duration = 0; set auto_explain.log_nested_statements = on;"
        echo "set auto_explain.log_analyze = on; set auto_explain.log_timing = off; set auto_explain.log_level = notice;"
        for i in $(seq 1 12); do
            sed "/^\\\\set/d; s/:spread/$spread/g; s/:size/$size/g; s/:v/$((RANDOM * 32768 + RANDOM + i))/g" "$SCRATCH/call.sql"
        done
    } >"$SCRATCH/explain.sql"
    # The last call's notices: its statements in order, then the call itself.
    psql "$URL" -q -f "$SCRATCH/explain.sql" 2>&1 >/dev/null |
        awk '/duration: / { d = $0; sub(/.*duration: /, "", d); sub(/ ms.*/, "", d); getline q; sub(/^Query Text: */, "", q);
                             n++; dur[n] = d; text[n] = substr(q, 1, 70) }
             END { for (i = n; i > 1 && text[i - 1] !~ /^select count\(\*\) from \(/; i--) {} ;
                   for (j = i; j <= n; j++) printf "    %8.3f ms  %s\n", dur[j], text[j] }'
}
echo
echo "one hot call ($HOT_SIZE changes), statement by statement (auto_explain; the last line is the whole call):"
explain_one 0 "$HOT_SIZE"
echo
echo "one spread call ($SPREAD_SIZE changes), statement by statement (auto_explain):"
explain_one 1 "$SPREAD_SIZE"
[[ -z "${KEEP:-}" ]] || echo "kept: $URL" >&2

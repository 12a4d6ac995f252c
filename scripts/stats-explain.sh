#!/usr/bin/env bash
# Measures the dashboard (stats) queries on a large table.
#
# Creates a scratch database and loads synthetic reactions: by default ten million over 100,000
# articles, each article published at a random time in the last 30 days and its reactions
# following it with a 12-hour mean delay (the few that would lie in the future fall anywhere in
# the 30 days instead), a few articles far more popular than the rest, stored in the order of
# their time as a live table fills. Applies the migrations with sqlx-cli and prints EXPLAIN
# (ANALYZE, BUFFERS) of every stats query exactly as src/store/postgres/stats.rs runs it (the statements,
# and the pieces each window is cut into, come from the service's code through
# examples/stats_sql.rs), then the execution times without per-node timing (which inflates
# them), as a custom plan and as the generic plan a prepared statement switches to. Then it runs
# the service (a release build) on the data and times the endpoints and the CSV export over
# HTTP, with the service's peak memory. The scratch database is dropped at the end, and first if
# an earlier run left it.
#
#   scripts/stats-explain.sh                              # 10,000,000 reactions, 100,000 articles
#   ROWS=1000000 ARTICLES=10000 scripts/stats-explain.sh  # a quick run
#   KEEP=1 scripts/stats-explain.sh                       # keep the database to experiment
#
# Needs psql, python3, curl and sqlx-cli (see the README). DATABASE_URL names the server (its
# database part is ignored); PORT is where the service listens during the HTTP part (18080).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${ROWS:-10000000}"
ARTICLES="${ARTICLES:-100000}"
PORT="${PORT:-18080}"
KEEP="${KEEP:-0}"
server="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
server="${server%/*}"
scratch="rr_stats_explain"
url="$server/$scratch"
sqlx="$(command -v sqlx || echo "$HOME/.cargo/bin/sqlx")"
token="stats-explain-token-stats-explain-token"
base="http://127.0.0.1:$PORT"
out="$(mktemp)"

step() { printf '\n==> %s\n' "$*"; }
admin() { psql "$server/postgres" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
scratch_sql() { psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }

service=""
cleanup() {
    if [[ -n "$service" ]]; then
        kill -TERM "$service" 2>/dev/null || true
        wait "$service" 2>/dev/null || true
    fi
    if [[ "$KEEP" == 1 ]]; then
        echo "kept $url"
    else
        admin -c "drop database if exists $scratch with (force)" || true
    fi
    rm -f "$out" "$out.sql" "$out.service"
}
trap cleanup EXIT

# The statements and the window pieces come from the service's own code (examples/stats_sql.rs).
cargo build --quiet --example stats_sql
stats_sql="target/debug/examples/stats_sql"
# The statement named $1 in src/store/postgres/stats.rs, the text the service sends.
statement() { "$stats_sql" statement "$1"; }
# The six instants a window [$1, $2) is read by (SQL expressions, evaluated by the server), no
# piece coarser than $3 (hour or day), as SQL literals: the parameters the service binds.
window() {
    local since until
    since="$(admin -c "select to_json(($1)::timestamptz) #>> '{}'")"
    until="$(admin -c "select to_json(($2)::timestamptz) #>> '{}'")"
    "$stats_sql" window "$since" "$until" "$3"
}

step "scratch database $scratch on ${server#*@}"
admin -c "drop database if exists $scratch with (force)"
admin -c "create database $scratch"
# The core schema first: rows load faster without the stats indexes, and their build is timed.
"$sqlx" migrate run --database-url "$url" --target-version 20261126000002

now="$(admin -c "select now()")"
echo "reference time (now): $now"

step "loading $ROWS reactions over $ARTICLES articles"
# Drawn in chunks into a staging table, then stored in time order.
scratch_sql -c "create unlogged table staging (like reactions)"
chunk=1000000
started=$SECONDS
for ((from = 1; from <= ROWS; from += chunk)); do
    to=$((from + chunk - 1))
    ((to > ROWS)) && to=$ROWS
    scratch_sql -c "
        insert into staging (article_id, visitor_key, reaction, updated_at)
        select format('%s/story-%s', to_char(published at time zone 'utc', 'YYYY/MM/DD'), article),
               sha256(int8send(i)),
               (case when pick < 0.35 then 'like' when pick < 0.55 then 'love'
                     when pick < 0.70 then 'angry' when pick < 0.80 then 'sad'
                     when pick < 0.90 then 'funny' when pick < 0.97 then 'wow'
                     else 'dislike' end)::reaction,
               case when later > '$now'::timestamptz
                    then '$now'::timestamptz - random() * interval '30 days'
                    else later end
        from (select i, article, random() as pick, published,
                     published + -ln(1 - random()) * interval '12 hours' as later
              from (select i, floor($ARTICLES * power(random(), 3))::int as article
                    from generate_series($from, $to) as i) as drawn,
                   lateral (select '$now'::timestamptz - interval '30 days'
                                   + ((hashint4(article) & 2147483647) % 2592000) * interval '1 second'
                                   as published) as p) as s"
    printf '  %9d rows drawn (%d s)\n' "$to" $((SECONDS - started))
done
scratch_sql -c "set synchronous_commit = off" \
    -c "insert into reactions select * from staging order by updated_at" -c "drop table staging"
printf '  stored in time order (%d s)\n' $((SECONDS - started))
scratch_sql -c "
    insert into article_reaction_counts (article_id, reaction, count)
    select article_id, reaction, count(*) from reactions group by 1, 2"

step "the stats migrations"
started=$SECONDS
"$sqlx" migrate run --database-url "$url" --target-version 20261126000003
echo "index builds: $((SECONDS - started)) s"
started=$SECONDS
"$sqlx" migrate run --database-url "$url"
echo "rollups filled from the rows: $((SECONDS - started)) s"
# The reactions of the last two days (what trending reads) come from client networks: most
# readers from a network of their own among 200,000, a network's key as the service stores it
# (16 bytes; here a plain hash, which costs the same to count). Older reactions keep none, as
# those stored before the migration that added the column.
started=$SECONDS
scratch_sql -c "set synchronous_commit = off" -c "
    update reactions set network = substr(sha256(int4send(floor(200000 * random())::int4)), 1, 16)
    where updated_at >= '$now'::timestamptz - interval '48 hours'"
echo "networks of the last 48 hours' reactions: $((SECONDS - started)) s"
for table in reactions article_reaction_counts reaction_counts_hourly reaction_counts_daily; do
    scratch_sql -c "vacuum (analyze) $table"
done
scratch_sql -c "checkpoint"

step "the data"
scratch_sql <<SQL
\pset footer off
select count(*) as reactions,
       count(distinct article_id) as articles,
       count(*) filter (where updated_at >= '$now'::timestamptz - interval '1 hour') as last_hour,
       count(*) filter (where updated_at >= '$now'::timestamptz - interval '24 hours') as last_24h,
       count(*) filter (where updated_at >= '$now'::timestamptz - interval '7 days') as last_7d
from reactions;
select (select count(*) from reaction_counts_hourly) as hourly_rollup_rows,
       (select count(*) from reaction_counts_daily) as daily_rollup_rows,
       (select count(*) from reaction_counts_hourly
        where bucket_start >= date_trunc('hour', '$now'::timestamptz) - interval '1 hour') as rows_per_hour_now,
       (select count(*) from reaction_counts_daily
        where bucket_start = date_trunc('day', '$now'::timestamptz, 'UTC') - interval '1 day') as rows_yesterday;
select relname as relation, pg_size_pretty(pg_relation_size(oid)) as size
from pg_class
where relname in ('reactions', 'reactions_pkey', 'reactions_visitor_key_idx',
                  'reactions_reaction_updated_at_idx', 'reactions_article_updated_at_network_idx',
                  'reaction_counts_hourly', 'reaction_counts_hourly_pkey', 'reaction_counts_hourly_bucket_idx',
                  'reaction_counts_daily', 'reaction_counts_daily_pkey', 'reaction_counts_daily_bucket_idx')
order by pg_relation_size(oid) desc;
SQL
hot_now="$(scratch_sql -At -c "
    select article_id from reactions where updated_at >= '$now'::timestamptz - interval '24 hours'
    group by 1 order by count(*) desc limit 1")"
hot_ever="$(scratch_sql -At -c "select article_id from article_reaction_counts group by 1 order by sum(count) desc limit 1")"
echo "most reactions in the last 24 h: $hot_now"
echo "most reactions overall:          $hot_ever"

step "EXPLAIN (ANALYZE, BUFFERS) of each statement as the service runs it"
echo "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $(admin -c "select version()")"
admin -c "select string_agg(name || '=' || setting || coalesce(unit, ''), ', ' order by name) from pg_settings
          where name in ('shared_buffers', 'work_mem', 'jit', 'max_parallel_workers_per_gather', 'random_page_cost')"
all="'{1,1,1,1,1,1,1}'::int4[]"
angry="'{0,0,0,0,1,0,0}'::int4[]"
n="'$now'::timestamptz"
day="$(window "$n - interval '24 hours'" "$n" day)"
week="$(window "$n - interval '7 days'" "$n" day)"
month="$(window "$n - interval '30 days'" "$n" day)"
export_select="$(statement EXPORT_CURSOR)"
export_select="${export_select#*cursor for}"
# name|parameters of EXECUTE
cases=(
    "top_articles: all reactions, last 24 h|top_articles($all, $day, 10)"
    "top_articles: reaction=angry, last 24 h|top_articles($angry, $day, 10)"
    "top_articles: all reactions, last 7 days|top_articles($all, $week, 10)"
    "top_articles: all reactions, last 30 days|top_articles($all, $month, 10)"
    "top_articles: reaction=angry, last 30 days|top_articles($angry, $month, 10)"
    "window_totals: last 24 h|window_totals($day)"
    "window_totals: last 7 days|window_totals($week)"
    "window_totals: last 30 days|window_totals($month)"
    "article_timeseries: hourly, last 24 h, busiest article of the day|article_timeseries('$hot_now', $(window "date_trunc('hour', $n) - interval '23 hours'" "$n" hour), interval '1 hour', 'epoch')"
    "article_timeseries: daily, 30 days, busiest article overall|article_timeseries('$hot_ever', $(window "date_trunc('day', $n, 'UTC') - interval '29 days'" "$n" day), interval '1 day', 'epoch')"
    "trending: window=1h|trending($all, $(window "$n - interval '2 hours'" "$n - interval '1 hour'" day), $(window "$n - interval '1 hour'" "$n" day), 10, 5)"
    "trending: window=24h|trending($all, $(window "$n - interval '48 hours'" "$n - interval '24 hours'" day), $day, 10, 5)"
    "export cursor query (export settings): last 24 h|export_rows($day)"
    "export cursor query (export settings): last 30 days|export_rows($month)"
)
{
    echo "set timezone = 'UTC';"
    w="timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz"
    echo "prepare top_articles(int4[], $w, int8) as $(statement TOP_ARTICLES);"
    echo "prepare window_totals($w) as $(statement WINDOW_TOTALS);"
    echo "prepare article_timeseries(text, $w, interval, timestamptz) as $(statement ARTICLE_TIMESERIES);"
    echo "prepare trending(int4[], $w, $w, int8, int8) as $(statement TRENDING);"
    echo "prepare export_rows($w) as $export_select;"
    for case in "${cases[@]}"; do
        name="${case%%|*}"
        execute="${case#*|}"
        # The export's query runs in the export's transaction, with its settings.
        if [[ "$name" == export* ]]; then
            echo "begin;"
            echo "$(statement EXPORT_SETTINGS);"
        fi
        # Warm the cache as a running service would have it, then measure.
        echo "\\o /dev/null"
        echo "execute $execute;"
        echo "\\o"
        echo "\\echo '==== $name'"
        echo "explain (analyze, buffers) execute $execute;"
        echo "\\echo '---- $name (custom plan)'"
        echo "explain (analyze, timing off, summary) execute $execute;"
        echo "set plan_cache_mode = force_generic_plan;"
        echo "\\echo '---- $name (generic plan)'"
        echo "explain (analyze, timing off, summary) execute $execute;"
        echo "reset plan_cache_mode;"
        if [[ "$name" == export* ]]; then
            echo "rollback;"
        fi
    done
    # A cursor is planned for its first rows unless told otherwise: show the plan the export's
    # cursor gets in the export's transaction.
    echo "\\echo '==== export cursor plan (explain declare in the export transaction, last 24 h)'"
    echo "begin;"
    echo "$(statement EXPORT_SETTINGS);"
    python3 - "$(statement EXPORT_CURSOR)" "$day" <<'PY'
import sys
cursor, values = sys.argv[1:]
for n, value in reversed(list(enumerate(values.split(", "), start=1))):
    cursor = cursor.replace("$%d" % n, value)
print("explain %s;" % cursor)
PY
    echo "rollback;"
} >"$out.sql"
scratch_sql -P pager=off -f "$out.sql" | tee "$out"
rm -f "$out.sql"

step "summary: execution times (ms), without per-node timing"
awk '
    /^==== / { name = ""; next }
    /^---- / { sub(/^---- /, ""); name = $0; next }
    /Execution Time:/ && name != "" { printf "  %9.1f  %s\n", $3, name }
' "$out"

step "the service over HTTP"
cargo build --quiet --release --bin reader-reactions
# A copy, so that another build replacing the file cannot pull it from under the running service.
cp target/release/reader-reactions "$out.service"
DATABASE_URL="$url" LISTEN_ADDR="127.0.0.1:$PORT" MIGRATE_ON_START=false ADMIN_TOKEN="$token" \
    RATE_LIMIT_STATS_PER_MINUTE=100000 RATE_LIMIT_STATS_BURST=100000 LOG_FORMAT=json RUST_LOG=error \
    "$out.service" &
service=$!
for attempt in $(seq 1 100); do
    curl -fs "$base/readyz" >/dev/null && break
    if ! kill -0 "$service" 2>/dev/null || ((attempt == 100)); then
        echo "the service did not start on port $PORT" >&2
        exit 1
    fi
    sleep 0.2
done
peak_rss() { awk '/VmHWM/ { print $2 / 1024 " MiB" }' "/proc/$service/status"; }
encode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
median_ms() {
    local path="$1" times=()
    for _ in 1 2 3 4 5; do
        times+=("$(curl -fs -o /dev/null -w '%{time_total}' "$base$path")")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk 'NR == 3 { printf "%7.1f", $1 * 1000 }'
}
hot_segment="$(encode "$hot_now")"
month_ago="$(encode "$(admin -c "select to_json('$now'::timestamptz - interval '30 days') #>> '{}'")")"
week_ago="$(encode "$(admin -c "select to_json('$now'::timestamptz - interval '7 days') #>> '{}'")")"
# Windows of a week or more read their top list from the articles' held bounds first (exact
# bounds here, as the migration fills them; the service's own writes keep them up to a quarter
# looser), and group the whole window only when the bounds cannot settle it cheaply.
for path in \
    "/v1/stats/top" \
    "/v1/stats/top?reaction=angry" \
    "/v1/stats/top?since=$week_ago" \
    "/v1/stats/top?since=$week_ago&limit=100" \
    "/v1/stats/top?since=$week_ago&reaction=angry" \
    "/v1/stats/top?since=$week_ago&reaction=angry&limit=100" \
    "/v1/stats/top?since=$month_ago" \
    "/v1/stats/top?since=$month_ago&limit=100" \
    "/v1/stats/top?since=$month_ago&reaction=angry" \
    "/v1/stats/top?since=$month_ago&reaction=angry&limit=100" \
    "/v1/stats/totals" \
    "/v1/stats/totals?since=$month_ago" \
    "/v1/articles/$hot_segment/timeseries" \
    "/v1/articles/$hot_segment/timeseries?bucket=day" \
    "/v1/stats/trending?window=1h" \
    "/v1/stats/trending?window=24h"; do
    printf '  %s ms  GET %s (median of 5)\n' "$(median_ms "$path")" "$path"
done
echo "  peak memory of the service so far: $(peak_rss)"
for window in "" "?since=$month_ago" "?since=1970-01-01T00:00:00Z"; do
    stats="$(curl -fs -H "Authorization: Bearer $token" -o "$out" \
        -w '%{time_total} %{size_download}' "$base/v1/stats/export.csv$window")"
    printf '  export.csv%s: %d rows, %d bytes in %.2f s; peak memory of the service: %s\n' \
        "$window" $(($(wc -l <"$out") - 1)) "${stats#* }" "${stats% *}" "$(peak_rss)"
done

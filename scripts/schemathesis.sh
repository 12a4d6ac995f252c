#!/usr/bin/env bash
# Property-based API testing from our own OpenAPI document: schemathesis generates requests from
# /openapi.json and checks every answer against it, against the service running on a fresh
# database with rate limits out of the way. The checks: no 5xx (not_a_server_error), and status
# codes, content types, headers and bodies as documented (the four *_conformance checks).
#
# Run from anywhere: `bash scripts/schemathesis.sh`. Needs python3 with venv, psql, and the
# PostgreSQL server of DATABASE_URL (default postgres://postgres@127.0.0.1:5432). Installs the
# pinned schemathesis into target/schemathesis-venv on first use.
#   ST_MAX_EXAMPLES  test cases per operation and phase (default 200)
#   ST_SEED          replay a run with the seed it printed
#   ST_CHECKS        other checks (default: the five above; `all` adds schemathesis's
#                    acceptance and rejection checks, which are informative here: see RELIABILITY.md)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
CHECKS="${ST_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance}"

venv=target/schemathesis-venv
server="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
server="${server%/*}"
database="rr_schemathesis_$$"
admin_token="schemathesis-admin-token-$$-0123456789"
log=target/schemathesis/service.log
mkdir -p target/schemathesis

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --locked --quiet
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

service=""
cleanup() {
    if [[ -n "$service" ]]; then
        kill -TERM "$service" 2>/dev/null || true
        wait "$service" 2>/dev/null || true
    fi
    psql "$server/postgres" -qc "drop database if exists $database with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

high=1000000
env DATABASE_URL="$server/$database" LISTEN_ADDR="127.0.0.1:$port" ADMIN_TOKEN="$admin_token" \
    RATE_LIMIT_WRITES_PER_MINUTE=$high RATE_LIMIT_WRITE_BURST=$high \
    RATE_LIMIT_READS_PER_MINUTE=$high RATE_LIMIT_READ_BURST=$high \
    RATE_LIMIT_STATS_PER_MINUTE=$high RATE_LIMIT_STATS_BURST=$high \
    RATE_LIMIT_ARTICLE_WRITES_PER_HOUR=$high \
    LOG_FORMAT=json RUST_LOG=warn target/debug/reader-reactions >"$log" 2>&1 &
service=$!
for _ in $(seq 1 120); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    if ! kill -0 "$service" 2>/dev/null; then
        echo "the service exited before it was ready; its log:"
        cat "$log"
        exit 1
    fi
    sleep 0.5
done
curl -fsS "$base/readyz" >/dev/null

# The admin token lets the CSV export answer 200 too (every request carries it; the others
# ignore it). The live-counts stream never ends by design, so it is left out (tests/api/live.rs
# covers it). Run inside target/ so that schemathesis's own cache stays there too.
(cd target/schemathesis && "../../$venv/bin/schemathesis" run "$base/openapi.json" \
    --checks "$CHECKS" \
    --exclude-path '/v1/articles/{article_id}/events' \
    --max-examples "${ST_MAX_EXAMPLES:-200}" \
    --header "Authorization: Bearer $admin_token" \
    --generation-database none \
    --request-timeout 10 \
    --report junit --report-junit-path junit.xml \
    --no-color \
    ${ST_SEED:+--seed "$ST_SEED"})

# A 5xx that schemathesis did not see still shows in the log as an internal error.
if grep -q '"internal error"' "$log"; then
    echo "the service logged internal errors during the run:"
    grep '"internal error"' "$log" | head -n 20
    exit 1
fi

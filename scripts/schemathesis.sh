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

source scripts/lib/test-service.sh
venv=target/schemathesis-venv
python_tools "$venv" "schemathesis==$SCHEMATHESIS_VERSION"
admin_token="schemathesis-admin-token-$$-0123456789"
start_test_service schemathesis ADMIN_TOKEN="$admin_token"

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
check_service_log

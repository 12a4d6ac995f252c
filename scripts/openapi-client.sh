#!/usr/bin/env bash
# Our OpenAPI document as its users meet it: a standard OpenAPI 3.1 validator accepts
# openapi/openapi.json, a mainstream generator makes a Python client of it without a warning, and
# that client drives the service (set, read, batch read, switch, undo, the stats, the time series,
# the export and erasing; scripts/openapi_client_check.py) against a fresh database, checking
# every answer. Exits non-zero on any failure.
#
# Run from anywhere: `bash scripts/openapi-client.sh`. Needs python3 with venv, psql, and the
# PostgreSQL server of DATABASE_URL (default postgres://postgres@127.0.0.1:5432). Installs the
# pinned tools into target/openapi-client-venv on first use; the client is generated into
# target/openapi-client/.
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC_VALIDATOR_VERSION=0.9.0
PYTHON_CLIENT_VERSION=0.29.1

source scripts/lib/test-service.sh
venv=target/openapi-client-venv
python_tools "$venv" "openapi-spec-validator==$SPEC_VALIDATOR_VERSION" \
    "openapi-python-client==$PYTHON_CLIENT_VERSION"
# The generator formats its output with ruff, which it installs beside itself.
export PATH="$PWD/$venv/bin:$PATH"

echo "openapi-spec-validator $SPEC_VALIDATOR_VERSION (OpenAPI 3.1):"
openapi-spec-validator --schema 3.1 --validation-errors all openapi/openapi.json

out=target/openapi-client
mkdir -p "$out"
echo "openapi-python-client $PYTHON_CLIENT_VERSION:"
openapi-python-client generate --path openapi/openapi.json --meta none \
    --output-path "$out/reader_reactions_client" --overwrite --fail-on-warning

stats_token="openapi-client-stats-token-$$-0123456789"
admin_token="openapi-client-admin-token-$$-0123456789"
# TRENDING_MIN_NETWORKS: every request comes from 127.0.0.1, one client network, so trending
# would otherwise list nothing (the service ignores the setting where it does not have it).
start_test_service openapi-client STATS_TOKEN="$stats_token" ADMIN_TOKEN="$admin_token" \
    TRENDING_MIN_NETWORKS=1

PYTHONPATH="$out" python scripts/openapi_client_check.py "$base" "$stats_token" "$admin_token"
check_service_log

# shellcheck shell=bash
# Helpers for the scripts that test the running service over HTTP (scripts/schemathesis.sh,
# scripts/openapi-client.sh). Source it from the repository root.

# python_tools VENV PACKAGE==VERSION...: makes sure the virtualenv VENV (under target/) has
# exactly these pinned packages, installing them on first use or after a pin changes.
python_tools() {
    local venv=$1
    shift
    local pin installed
    installed=$("$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null || true)
    for pin in "$@"; do
        if ! grep -qixF "$pin" <<<"$installed"; then
            echo "installing $* into $venv"
            python3 -m venv "$venv"
            "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
            return
        fi
    done
}

# start_test_service NAME [VAR=value...]: builds and starts the debug binary on a fresh
# PostgreSQL database of the server of DATABASE_URL (default postgres://postgres@127.0.0.1:5432),
# on a free port, with every rate limit out of the way and the given settings added, and returns
# once it is ready. NAME names the database (rr_NAME_PID, `-` as `_`) and the folder of its log
# (target/NAME/service.log). Sets `base` (http://127.0.0.1:PORT) and `log`. On exit the service
# is stopped and the database dropped.
start_test_service() {
    local name=$1
    shift
    local server="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    test_server="${server%/*}"
    test_database="rr_${name//-/_}_$$"
    test_service=""
    log="target/$name/service.log"
    mkdir -p "target/$name"
    trap stop_test_service EXIT

    cargo build --locked --quiet
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    base="http://127.0.0.1:$port"

    local high=1000000
    env DATABASE_URL="$test_server/$test_database" LISTEN_ADDR="127.0.0.1:$port" \
        RATE_LIMIT_WRITES_PER_MINUTE=$high RATE_LIMIT_WRITE_BURST=$high \
        RATE_LIMIT_READS_PER_MINUTE=$high RATE_LIMIT_READ_BURST=$high \
        RATE_LIMIT_STATS_PER_MINUTE=$high RATE_LIMIT_STATS_BURST=$high \
        RATE_LIMIT_ARTICLE_WRITES_PER_HOUR=$high \
        LOG_FORMAT=json RUST_LOG=warn "$@" target/debug/reader-reactions >"$log" 2>&1 &
    test_service=$!
    for _ in $(seq 1 120); do
        curl -fsS "$base/readyz" >/dev/null 2>&1 && break
        if ! kill -0 "$test_service" 2>/dev/null; then
            echo "the service exited before it was ready; its log:"
            cat "$log"
            exit 1
        fi
        sleep 0.5
    done
    curl -fsS "$base/readyz" >/dev/null
}

stop_test_service() {
    if [[ -n "$test_service" ]]; then
        kill -TERM "$test_service" 2>/dev/null || true
        wait "$test_service" 2>/dev/null || true
    fi
    psql "$test_server/postgres" -qc "drop database if exists $test_database with (force)" >/dev/null 2>&1 || true
}

# check_service_log: fails when the service logged an internal error (a 5xx the caller may not
# have seen).
check_service_log() {
    if grep -q '"internal error"' "$log"; then
        echo "the service logged internal errors during the run:"
        grep '"internal error"' "$log" | head -n 20
        exit 1
    fi
}

#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine with a Rust toolchain:
#   1. installs the system packages the build and the tests need (apt-get),
#   2. starts the real upstream servers (Dovecot; SOGo ActiveSync with its PostgreSQL,
#      memcached, Dovecot and SMTP sink) on 127.0.0.1,
#   3. checks formatting and lints, builds, and runs every test of the workspace,
#   4. stops the servers it started (servers that were already running are left running).
# Exits non-zero if anything fails, naming the server that could not start.
#
# Environment: every port and folder variable of scripts/test-servers/*.sh is honoured, so
# two runs with different values do not collide. TEST_FILTER, if set, is passed to nextest.
set -euo pipefail
TS_COMPONENT=test
# shellcheck source=test-servers/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/test-servers/lib.sh"
cd "$REPO_ROOT"
started_at=$(date +%s)

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"

# Build dependencies: bindgen (RocksDB) needs libclang; sccache caches C++ and Rust objects
# across builds on this machine; libwbxml2-utils cross-checks the WBXML codec; python3 runs
# the mailbox loader.
ensure_packages build-essential pkg-config libclang-dev sccache libwbxml2-utils python3 openssl
if command -v sccache >/dev/null && [ -z "${RUSTC_WRAPPER:-}" ]; then
    export RUSTC_WRAPPER=sccache
fi

started=()
cleanup() {
    local rc=$?
    local s
    for s in "${started[@]}"; do
        "scripts/test-servers/$s.sh" stop || true
    done
    log "finished in $(($(date +%s) - started_at)) s (exit $rc)"
    exit $rc
}
trap cleanup EXIT

start_server() {
    local name=$1
    if "scripts/test-servers/$name.sh" status >/dev/null 2>&1; then
        log "$name already running; leaving it running afterwards"
        return 0
    fi
    "scripts/test-servers/$name.sh" start || die "could not start $name (see the messages above)"
    started+=("$name")
}

log "checking formatting"
cargo fmt --all -- --check || die "cargo fmt --check found unformatted code (run: cargo fmt --all)"

# Servers start while nothing else is using them; the build below takes longer than they do.
start_server dovecot
start_server eas-stack

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast ${TEST_FILTER:+-E "$TEST_FILTER"}
else
    log "cargo-nextest not installed; using cargo test"
    cargo test --workspace --locked --no-fail-fast
fi

# Shared helpers for the test-server scripts. Sourced, not run.
# shellcheck shell=bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export REPO_ROOT

log() { printf '[%s] %s\n' "${TS_COMPONENT:-test-servers}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Installs the named Debian packages when any is missing. --no-remove because some
# mail servers conflict (dovecot-imapd vs cyrus-imapd) and must never be swapped silently;
# the lock timeout lets parallel set-ups wait for each other instead of failing.
ensure_packages() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q --no-remove --no-install-recommends)
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >/dev/null; then
        log "install failed; refreshing package lists and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q update >/dev/null
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >/dev/null \
            || die "could not install ${missing[*]}"
    fi
}

# True when PID is a live process. A zombie counts as gone: init here reaps slowly.
pid_running() {
    local pid=$1 state
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ]
}

# True when the PID recorded in FILE is a live process.
pid_alive() {
    local file=$1
    [ -s "$file" ] && pid_running "$(cat "$file")"
}

# Waits up to SECONDS for a TCP port on 127.0.0.1 to accept connections.
wait_port() {
    local port=$1 seconds=${2:-30} i
    for ((i = 0; i < seconds * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Stops the process whose PID is recorded in FILE (TERM, then KILL after SECONDS).
stop_pidfile() {
    local file=$1 seconds=${2:-10} pid i
    if ! pid_alive "$file"; then rm -f "$file"; return 0; fi
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < seconds * 10; i++)); do
        pid_running "$pid" || { rm -f "$file"; return 0; }
        sleep 0.1
    done
    log "pid $pid did not stop on TERM; sending KILL"
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$file"
}

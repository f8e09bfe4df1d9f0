#!/usr/bin/env bash
# A real Exchange ActiveSync server for tests: SOGo 5.8 + sogo-activesync on 127.0.0.1,
# with its own Dovecot, a private PostgreSQL 15 cluster, memcached and an SMTP sink.
#
#   scripts/test-servers/eas-stack.sh start|stop|status|env
#   scripts/test-servers/eas-stack.sh qresync-touch USER [MAILBOX...]
#
# Environment (defaults in brackets):
#   EAS_STACK_DIR       state folder                        [REPO/.test-servers/eas]
#   EAS_SOGO_PORT       SOGo HTTP (ActiveSync endpoint)     [20000]
#   EAS_PG_PORT         PostgreSQL                          [20001]
#   EAS_MEMCACHED_PORT  memcached                           [20002]
#   EAS_SMTP_PORT       SMTP sink                           [20025]
#   EAS_IMAP_PORT       Dovecot IMAP                        [20143]
#   EAS_IMAPS_PORT      Dovecot IMAPS (dovecot.sh opens it) [20993]
#   EAS_USERS           space-separated user:password       ["alice:alice-pw bob:bob-pw"]
#   EAS_SOGO_WORKERS    sogod worker processes              [8]
#   EAS_START_TIMEOUT   seconds to wait for each component  [60]
#
# Users are user@example.test. The endpoint is
#   http://127.0.0.1:$EAS_SOGO_PORT/SOGo/Microsoft-Server-ActiveSync?Cmd=...&User=U&DeviceId=D&DeviceType=T
# with preemptive Basic auth. `env` prints these as shell assignments.
#
# `qresync-touch` must be run for a mailbox created through IMAP after start (SOGo keys
# a folder "-1" and Sync returns nothing until Dovecot has seen QRESYNC on it once).
#
# SOGo reads the machine-wide /etc/sogo/sogo.conf, so only one stack per machine can run
# SOGo at a time; /etc/sogo/eas-stack.owner names the state folder whose config is in it.
#
# eas/README.md says how a test uses the stack and what the state folder holds.
set -euo pipefail
TS_COMPONENT=eas-stack
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

DIR=${EAS_STACK_DIR:-$REPO_ROOT/.test-servers/eas}
SOGO_PORT=${EAS_SOGO_PORT:-20000}
PG_PORT=${EAS_PG_PORT:-20001}
MEMCACHED_PORT=${EAS_MEMCACHED_PORT:-20002}
SMTP_PORT=${EAS_SMTP_PORT:-20025}
IMAP_PORT=${EAS_IMAP_PORT:-20143}
IMAPS_PORT=${EAS_IMAPS_PORT:-20993}
USERS=${EAS_USERS:-alice:alice-pw bob:bob-pw}
WORKERS=${EAS_SOGO_WORKERS:-8}
TIMEOUT=${EAS_START_TIMEOUT:-60}
DOMAIN=example.test
# The real interpreter, not a pyenv shim: its file name is what /proc/PID/comm shows for
# the SMTP sink, which ours_alive checks before signalling.
PY_EXE=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
PY_COMM=$(basename "$PY_EXE" | cut -c1-15)

PG_BIN=/usr/lib/postgresql/15/bin
SOGO_CONF=/etc/sogo/sogo.conf
SOGO_OWNER=/etc/sogo/eas-stack.owner
EAS_PATH=/SOGo/Microsoft-Server-ActiveSync

# Dovecot is the lead's dovecot.sh with its state inside ours, so a stop of this stack
# never touches the stand-alone IMAP test server.
dovecot_sh() {
    DOVECOT_DIR="$DIR/dovecot" DOVECOT_IMAP_PORT="$IMAP_PORT" DOVECOT_IMAPS_PORT="$IMAPS_PORT" \
        DOVECOT_USERS="$USERS" "$HERE/dovecot.sh" "$@"
}

# Fails naming the component and showing the end of its log: the one thing a person
# debugging a red CI run needs.
fail() {
    local component=$1 logfile=$2 msg=$3
    log "ERROR: $component failed: $msg"
    if [ -s "$logfile" ]; then
        log "--- last lines of $logfile ---"
        tail -n 30 "$logfile" >&2
    fi
    exit 1
}

# Like pid_alive, but also checks the process is still the program we started, so a
# recycled PID is never signalled.
ours_alive() {
    local file=$1 comm=$2 pid
    pid_alive "$file" || return 1
    pid=$(cat "$file")
    alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}

# A live, non-zombie process. Daemons we started are re-parented to this machine's init,
# which reaps late (seconds), so kill -0 alone would report a dead daemon as running.
alive() {
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Refuses to start a component on a port someone else already holds, so readiness checks
# cannot be fooled by a foreign server.
require_free_port() {
    port_open "$2" && fail "$1" /dev/null "port 127.0.0.1:$2 is already in use by another process"
    return 0
}

# Sends SIG to PID and waits up to SECONDS for it to go; KILL after that.
kill_wait() {
    local pid=$1 sig=$2 seconds=$3 i
    kill "-$sig" "$pid" 2>/dev/null || return 0
    for ((i = 0; i < seconds * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    log "pid $pid still alive after SIG$sig; sending KILL"
    kill -9 "$pid" 2>/dev/null || true
}

user_names() {
    local pair
    for pair in $USERS; do printf '%s ' "${pair%%:*}"; done
}

user_password() {
    local want=$1 pair
    for pair in $USERS; do
        [ "${pair%%:*}" = "$want" ] && { printf '%s' "${pair#*:}"; return 0; }
    done
    return 1
}

# ---------------------------------------------------------------- dovecot + QRESYNC

start_dovecot() {
    # dovecot.sh is idempotent itself; it also installs its packages.
    dovecot_sh start || fail dovecot "$DIR/dovecot/dovecot.log" "dovecot.sh start exited non-zero"
}

qresync_touch() {
    local user=$1 pass
    shift
    pass=$(user_password "$user") || die "unknown user '$user' (EAS_USERS: $(user_names))"
    "$PY_EXE" "$HERE/eas/qresync-touch.py" "$IMAP_PORT" "$user" "$pass" "$@" >&2
}

# ---------------------------------------------------------------- PostgreSQL

psql_admin() {
    # Quiet the NOTICEs of IF NOT EXISTS on every re-run.
    PGOPTIONS="-c client_min_messages=warning" \
        psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

start_postgres() {
    local pgdir=$DIR/pg
    if ours_alive "$DIR/postgres.pid" postgres; then
        log "postgres already running (pid $(cat "$DIR/postgres.pid"))"
    else
        require_free_port postgres "$PG_PORT"
        mkdir -p "$pgdir/run"
        chown -R postgres:postgres "$pgdir"
        # initdb and postgres refuse to run as root; the Debian 'postgres' user owns the
        # cluster. Trust auth: loopback-only throwaway cluster.
        if [ ! -s "$pgdir/data/PG_VERSION" ]; then
            runuser -u postgres -- "$PG_BIN/initdb" -D "$pgdir/data" -U postgres --auth=trust \
                -E UTF8 --locale=C.UTF-8 >"$pgdir/initdb.log" 2>&1 \
                || fail postgres "$pgdir/initdb.log" "initdb failed"
        fi
        # A stale postmaster.pid from a killed run would block start-up.
        rm -f "$pgdir/data/postmaster.pid"
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w \
            -t "$TIMEOUT" -o "-p $PG_PORT -k $pgdir/run -c listen_addresses=127.0.0.1 -c fsync=off" \
            start </dev/null >>"$pgdir/pg_ctl.log" 2>&1 \
            || fail postgres "$pgdir/postgres.log" "pg_ctl start did not bring it up"
        head -n 1 "$pgdir/data/postmaster.pid" >"$DIR/postgres.pid"
    fi
    local i
    for ((i = 0; i < TIMEOUT * 10; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
        sleep 0.1
    done
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" \
        || fail postgres "$pgdir/postgres.log" "not accepting connections on 127.0.0.1:$PG_PORT"

    # Schema: SOGo creates its own profile/folder tables; it only needs the role, the
    # database and the user table it authenticates against. Users are rewritten on
    # every start so EAS_USERS is the truth.
    if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_roles WHERE rolname='sogo'")" != 1 ]; then
        psql_admin -c "CREATE ROLE sogo LOGIN PASSWORD 'sogo'" >/dev/null
        psql_admin -c "CREATE DATABASE sogo OWNER sogo" >/dev/null
    fi
    local sql pair user pass
    sql="CREATE TABLE IF NOT EXISTS sogo_users (c_uid varchar(255) PRIMARY KEY,
           c_name varchar(255) NOT NULL, c_password varchar(255) NOT NULL,
           c_cn varchar(255), mail varchar(255));
         DELETE FROM sogo_users;"
    for pair in $USERS; do
        user=${pair%%:*}
        pass=${pair#*:}
        sql+="INSERT INTO sogo_users VALUES ('${user//\'/\'\'}', '${user//\'/\'\'}',
               '${pass//\'/\'\'}', '${user//\'/\'\'}', '${user//\'/\'\'}@$DOMAIN');"
    done
    psql_admin -U sogo -d sogo -c "$sql" >/dev/null \
        || fail postgres "$pgdir/postgres.log" "could not write the sogo_users table"
}

# ---------------------------------------------------------------- memcached

start_memcached() {
    if ours_alive "$DIR/memcached.pid" memcached; then
        log "memcached already running (pid $(cat "$DIR/memcached.pid"))"
        return 0
    fi
    require_free_port memcached "$MEMCACHED_PORT"
    # setsid: own session, so a test runner killing its process group spares it. In a
    # script without job control setsid execs in place, so $! is memcached itself.
    setsid memcached -u memcache -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 \
        </dev/null >>"$DIR/memcached.log" 2>&1 &
    echo $! >"$DIR/memcached.pid"
    wait_port "$MEMCACHED_PORT" "$TIMEOUT" \
        || fail memcached "$DIR/memcached.log" "port 127.0.0.1:$MEMCACHED_PORT not open"
}

# ---------------------------------------------------------------- SMTP sink

start_smtp() {
    mkdir -p "$DIR/smtp"
    if ours_alive "$DIR/smtp-sink.pid" "$PY_COMM"; then
        log "smtp sink already running (pid $(cat "$DIR/smtp-sink.pid"))"
        return 0
    fi
    require_free_port smtp-sink "$SMTP_PORT"
    SINK_PORT=$SMTP_PORT SINK_SPOOL=$DIR/smtp SINK_IMAP_PORT=$IMAP_PORT SINK_USERS=$USERS \
        SINK_DOMAIN=$DOMAIN setsid "$PY_EXE" "$HERE/eas/smtp-sink.py" \
        </dev/null >>"$DIR/smtp-sink.log" 2>&1 &
    echo $! >"$DIR/smtp-sink.pid"
    wait_port "$SMTP_PORT" "$TIMEOUT" \
        || fail smtp-sink "$DIR/smtp-sink.log" "port 127.0.0.1:$SMTP_PORT not open"
}

# ---------------------------------------------------------------- SOGo

write_sogo_conf() {
    local db="postgresql://sogo:sogo@127.0.0.1:$PG_PORT/sogo"
    mkdir -p "$DIR/sogo"
    cat >"$DIR/sogo/sogo.conf" <<CONF
{
  WOPort = "127.0.0.1:$SOGO_PORT";
  WOWorkersCount = $WORKERS;
  SOGoProfileURL = "$db/sogo_user_profile";
  OCSFolderInfoURL = "$db/sogo_folder_info";
  OCSSessionsFolderURL = "$db/sogo_sessions_folder";
  OCSEMailAlarmsFolderURL = "$db/sogo_alarms_folder";
  SOGoUserSources = (
    {
      type = sql;
      id = users;
      viewURL = "$db/sogo_users";
      canAuthenticate = YES;
      isAddressBook = NO;
      userPasswordAlgorithm = plain;
      displayName = "Test users";
    }
  );
  SOGoMailDomain = $DOMAIN;
  SOGoIMAPServer = "imap://127.0.0.1:$IMAP_PORT/?tls=NO";
  SOGoMailingMechanism = smtp;
  SOGoSMTPServer = "smtp://127.0.0.1:$SMTP_PORT/?tls=NO";
  SOGoMemcachedHost = "127.0.0.1:$MEMCACHED_PORT";
  SOGoSentFolderName = Sent;
  SOGoTrashFolderName = Trash;
  SOGoDraftsFolderName = Drafts;
  SOGoJunkFolderName = Junk;
  SOGoLanguage = English;
  SOGoTimeZone = UTC;
  SOGoAppointmentSendEMailNotifications = NO;
  SOGoEnableEMailAlarms = NO;
  SOGoVacationEnabled = NO;
  SOGoForwardEnabled = NO;
  SOGoSieveScriptsEnabled = NO;
  SOGoMailAuxiliaryUserAccountsEnabled = NO;
  SOGoInternalSyncInterval = 5;
  SOGoMaximumPingInterval = 60;
}
CONF
    install -o root -g sogo -m 0640 "$DIR/sogo/sogo.conf" "$SOGO_CONF"
    printf '%s\n' "$DIR" >"$SOGO_OWNER"
}

# One SOGo per machine: never rewrite the config under another stack's live sogod.
check_sogo_owner() {
    local other
    other=$(cat "$SOGO_OWNER" 2>/dev/null || true)
    if [ -n "$other" ] && [ "$other" != "$DIR" ] && ours_alive "$other/sogo.pid" sogod; then
        fail sogo /dev/null "another EAS stack ($other) runs SOGo; /etc/sogo/sogo.conf is machine-wide, stop it first"
    fi
    return 0
}

start_sogo() {
    local sd=$DIR/sogo
    if ours_alive "$DIR/sogo.pid" sogod; then
        log "sogo already running (pid $(cat "$DIR/sogo.pid"))"
    else
        check_sogo_owner
        require_free_port sogo "$SOGO_PORT"
        write_sogo_conf
        mkdir -p "$sd/home"
        chown sogo:sogo "$sd" "$sd/home"
        rm -f "$sd/sogod.pid"
        # A private HOME keeps GNUstep user defaults (which override sogo.conf) out of it.
        # sogod detaches itself and writes its PID file.
        runuser -u sogo -- env HOME="$sd/home" /usr/sbin/sogod -WOWorkersCount "$WORKERS" \
            -WOPidFile "$sd/sogod.pid" -WOLogFile "$sd/sogo.log" -WOPort "127.0.0.1:$SOGO_PORT" \
            </dev/null >>"$sd/sogod.out" 2>&1 \
            || fail sogo "$sd/sogod.out" "sogod exited non-zero"
        # sogod deletes its own PID file as soon as it gets TERM, yet its workers live on
        # for a while: keep our own record, taken before any wait that could fail, so
        # stop/status never lose track of them.
        local j
        for ((j = 0; j < TIMEOUT * 10; j++)); do
            [ -s "$sd/sogod.pid" ] && break
            sleep 0.1
        done
        [ -s "$sd/sogod.pid" ] || fail sogo "$sd/sogo.log" "sogod wrote no PID file"
        cp "$sd/sogod.pid" "$DIR/sogo.pid"
    fi
    local first=${USERS%% *} user pass i hdrs=""
    user=${first%%:*}
    pass=${first#*:}
    for ((i = 0; i < TIMEOUT * 4; i++)); do
        hdrs=$(curl -s -m 5 -o /dev/null -D - -X OPTIONS -u "$user:$pass" \
            "http://127.0.0.1:$SOGO_PORT$EAS_PATH?User=$user&DeviceId=easstackprobe&DeviceType=probe" || true)
        grep -qi '^MS-ASProtocolVersions:.*14\.1' <<<"$hdrs" && break
        sleep 0.25
    done
    grep -qi '^MS-ASProtocolVersions:.*14\.1' <<<"$hdrs" \
        || fail sogo "$sd/sogo.log" "authenticated OPTIONS $EAS_PATH did not list 14.1 within ${TIMEOUT}s"
}

# ---------------------------------------------------------------- commands

write_env() {
    cat >"$DIR/stack.env" <<ENV
EAS_STACK_DIR='$DIR'
EAS_URL='http://127.0.0.1:$SOGO_PORT$EAS_PATH'
EAS_SOGO_PORT=$SOGO_PORT
EAS_PG_PORT=$PG_PORT
EAS_MEMCACHED_PORT=$MEMCACHED_PORT
EAS_SMTP_PORT=$SMTP_PORT
EAS_IMAP_PORT=$IMAP_PORT
EAS_IMAPS_PORT=$IMAPS_PORT
EAS_USERS='$USERS'
EAS_DOMAIN=$DOMAIN
EAS_SMTP_SPOOL='$DIR/smtp'
ENV
}

start() {
    local t0=$SECONDS
    ensure_packages sogo sogo-activesync memcached postgresql-15 curl
    # Checked before anything starts, so a refused second stack leaves nothing running.
    ours_alive "$DIR/sogo.pid" sogod || check_sogo_owner
    mkdir -p "$DIR"
    chmod 0755 "$DIR"
    start_dovecot
    local u
    for u in $(user_names); do
        qresync_touch "$u" || fail dovecot "$DIR/dovecot/dovecot.log" "QRESYNC touch for $u failed"
    done
    start_postgres
    start_memcached
    start_smtp
    start_sogo
    write_env
    log "up in $((SECONDS - t0))s: EAS http://127.0.0.1:$SOGO_PORT$EAS_PATH users: $(user_names)"
}

stop_sogo() {
    local sd=$DIR/sogo pid kids=() k i
    if ! ours_alive "$DIR/sogo.pid" sogod; then
        rm -f "$DIR/sogo.pid"
        echo "sogo: not running"
        return 0
    fi
    pid=$(cat "$DIR/sogo.pid")
    # Workers ignore TERM while idle and the watchdog waits for them (~30 s); SOGo keeps
    # no state worth a clean exit here (all of it is in PostgreSQL). So: collect the
    # parent's children first (they are ours too), TERM everything, then KILL what is
    # left after a short grace.
    mapfile -t kids < <(ps -o pid= --ppid "$pid" | tr -d ' ')
    kill -TERM "$pid" "${kids[@]}" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    # Freeze a surviving watchdog so it cannot spawn a worker we would miss, then take the
    # final list of its children and KILL them all.
    if alive "$pid"; then
        kill -STOP "$pid" 2>/dev/null || true
        mapfile -t -O "${#kids[@]}" kids < <(ps -o pid= --ppid "$pid" | tr -d ' ')
    fi
    for k in "${kids[@]}" "$pid"; do
        if [ "$(cat "/proc/$k/comm" 2>/dev/null)" = sogod ]; then kill -9 "$k" 2>/dev/null || true; fi
    done
    rm -f "$DIR/sogo.pid" "$sd/sogod.pid"
    [ "$(cat "$SOGO_OWNER" 2>/dev/null)" = "$DIR" ] && rm -f "$SOGO_OWNER"
    echo "sogo: stopped"
}

stop_simple() {
    local name=$1 file=$2 comm=$3 sig=$4
    if ours_alive "$file" "$comm"; then
        kill_wait "$(cat "$file")" "$sig" 20
        echo "$name: stopped"
    else
        echo "$name: not running"
    fi
    rm -f "$file"
}

stop() {
    stop_sogo
    stop_simple smtp-sink "$DIR/smtp-sink.pid" "$PY_COMM" TERM
    stop_simple memcached "$DIR/memcached.pid" memcached TERM
    # SIGINT is PostgreSQL's fast shutdown: no waiting for clients.
    stop_simple postgres "$DIR/postgres.pid" postgres INT
    if [ -x "$HERE/dovecot.sh" ]; then dovecot_sh stop; fi
}

status() {
    local ok=0
    show() { # name pidfile comm detail
        if ours_alive "$2" "$3"; then
            echo "$1: up (pid $(cat "$2")) $4"
        else
            echo "$1: down"
            ok=1
        fi
    }
    show postgres "$DIR/postgres.pid" postgres "127.0.0.1:$PG_PORT"
    show memcached "$DIR/memcached.pid" memcached "127.0.0.1:$MEMCACHED_PORT"
    show smtp-sink "$DIR/smtp-sink.pid" "$PY_COMM" "127.0.0.1:$SMTP_PORT spool $DIR/smtp"
    dovecot_sh status || ok=1
    show sogo "$DIR/sogo.pid" sogod "http://127.0.0.1:$SOGO_PORT$EAS_PATH"
    echo "sogo.conf owner: $(cat "$SOGO_OWNER" 2>/dev/null || echo none)"
    return $ok
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
env) cat "$DIR/stack.env" ;;
qresync-touch)
    [ $# -ge 2 ] || die "usage: $0 qresync-touch USER [MAILBOX...]"
    shift
    qresync_touch "$@"
    ;;
*)
    echo "usage: $0 start|stop|status|env|qresync-touch USER [MAILBOX...]" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# A private Dovecot IMAP server for tests, on 127.0.0.1 only.
#
#   scripts/test-servers/dovecot.sh start|stop|status
#
# Environment (defaults in brackets):
#   DOVECOT_DIR         state folder: config, users, mail, logs, pid [REPO/.test-servers/dovecot]
#   DOVECOT_IMAP_PORT   IMAP, plain and STARTTLS                      [14143]
#   DOVECOT_IMAPS_PORT  IMAP over implicit TLS                         [14993]
#   DOVECOT_USERS       space-separated user:password pairs        ["alice:alice-pw bob:bob-pw"]
#   DOVECOT_SIEVE_PORT  ManageSieve (RFC 5804), plain and STARTTLS; none when unset   [unset]
#   DOVECOT_OAUTH2_KEY  if set: AUTHENTICATE XOAUTH2 and OAUTHBEARER also accept HS256 JWTs
#                       signed with this key (base64), validated locally; "sub" is the user
#
# Capabilities offered: CONDSTORE, QRESYNC, IDLE, NOTIFY (needs the mailbox list index),
# MOVE, UIDPLUS, SPECIAL-USE with Drafts, Sent, Trash, Junk and Archive, and QUOTA (one root,
# "User quota": STORAGE 10 GiB, MESSAGE 1000000, far above what the benchmarks store).
# TLS (STARTTLS on the imap port, implicit on
# imaps) uses a certificate for "localhost"/127.0.0.1 issued by a private test CA: trust
# $DOVECOT_DIR/tls/ca.pem to verify it.
set -euo pipefail
TS_COMPONENT=dovecot
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR=${DOVECOT_DIR:-$REPO_ROOT/.test-servers/dovecot}
IMAP_PORT=${DOVECOT_IMAP_PORT:-14143}
IMAPS_PORT=${DOVECOT_IMAPS_PORT:-14993}
USERS=${DOVECOT_USERS:-alice:alice-pw bob:bob-pw}
SIEVE_PORT=${DOVECOT_SIEVE_PORT:-}
PIDFILE=$DIR/dovecot.pid

write_config() {
    mkdir -p "$DIR/run" "$DIR/state" "$DIR/tls" "$DIR/home"
    # Mail is owned by the Debian 'mail' user (uid 8); login processes need to reach the
    # run folder, so the tree stays world-traversable.
    chown mail:mail "$DIR/home"
    chmod 0755 "$DIR" "$DIR/run" "$DIR/state"

    if [ ! -s "$DIR/tls/cert.pem" ] || [ ! -s "$DIR/tls/ca.pem" ]; then
        # A private CA and a server certificate it signs: verifying clients (rustls) refuse a
        # CA certificate presented as the server's own, so one self-signed cert is not enough.
        (
            cd "$DIR/tls"
            openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=jmap-gateway test CA" \
                -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
                -keyout ca.key -out ca.pem
            openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout key.pem -out server.csr
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
                -extfile server.ext -out cert.pem
            rm -f server.csr server.ext ca.srl
            chmod 0600 ca.key key.pem
        ) >/dev/null 2>&1 || die "openssl could not create the test certificates"
    fi

    : >"$DIR/users"
    local pair user pass
    for pair in $USERS; do
        user=${pair%%:*}
        pass=${pair#*:}
        [ -n "$user" ] && [ "$user" != "$pair" ] || die "DOVECOT_USERS entry '$pair' is not user:password"
        printf '%s:{PLAIN}%s:8:8::%s/home/%s\n' "$user" "$pass" "$DIR" "$user" >>"$DIR/users"
    done
    chmod 0640 "$DIR/users"
    chgrp dovecot "$DIR/users"

    local dh=""
    [ -s /usr/share/dovecot/dh.pem ] && dh="ssl_dh = </usr/share/dovecot/dh.pem"

    # --- OAuth 2 (opt-in): tokens checked against a local key, no identity provider. ---
    local oauth_mechs="" oauth_passdb=""
    if [ -n "${DOVECOT_OAUTH2_KEY:-}" ]; then
        # The key dict is looked up as <prefix><azp>/<alg>/<kid>, "default" when absent.
        mkdir -p "$DIR/oauth2-keys/default/HS256"
        printf '%s' "$DOVECOT_OAUTH2_KEY" >"$DIR/oauth2-keys/default/HS256/default"
        cat >"$DIR/oauth2.conf.ext" <<OAUTH
introspection_mode = local
local_validation_key_dict = fs:posix:prefix=$DIR/oauth2-keys/
username_attribute = sub
OAUTH
        oauth_mechs=" xoauth2 oauthbearer"
        oauth_passdb="passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $DIR/oauth2.conf.ext
}"
    fi

    cat >"$DIR/dovecot.conf" <<CONF
# Written by scripts/test-servers/dovecot.sh; edits are overwritten at the next start.
base_dir = $DIR/run
state_dir = $DIR/state
log_path = $DIR/dovecot.log
instance_name = dovecot-test-$IMAP_PORT
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes

ssl = yes
ssl_cert = <$DIR/tls/cert.pem
ssl_key = <$DIR/tls/key.pem
$dh
disable_plaintext_auth = no
auth_mechanisms = plain login$oauth_mechs

passdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN $DIR/users
}
$oauth_passdb
userdb {
  driver = passwd-file
  args = $DIR/users
}
mail_uid = mail
mail_gid = mail
first_valid_uid = 8
mail_location = maildir:~/Maildir
mailbox_list_index = yes
maildir_very_dirty_syncs = yes

# Quota (RFC 9208 GETQUOTAROOT): the count backend reads usage from the indexes and needs
# virtual sizes; the limits are far above what any test stores, so nothing is ever refused.
mail_plugins = \$mail_plugins quota zlib
plugin {
  quota_vsizes = yes
  quota = count:User quota
  quota_rule = *:storage=10G
  quota_rule2 = *:messages=1000000
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
# A 100k-message maildir makes an imap process reload a ~5 MB uidlist into a pool that
# doubles past the default 256 MB address-space limit; the process then dies mid-FETCH
# ("Out of memory (service imap { vsz_limit=256 MB })") and its client is disconnected.
# The sync benchmark loads 100k messages.
service imap {
  vsz_limit = 1G
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
protocol imap {
  mail_max_userip_connections = 100
  imap_idle_notify_interval = 1 secs
  # COMPRESS=DEFLATE (RFC 4978); the adapter uses it on non-loopback servers or when told.
  mail_plugins = \$mail_plugins imap_quota imap_zlib
}

namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    auto = subscribe
    special_use = \\Drafts
  }
  mailbox Sent {
    auto = subscribe
    special_use = \\Sent
  }
  mailbox Trash {
    auto = subscribe
    special_use = \\Trash
  }
  mailbox Junk {
    auto = subscribe
    special_use = \\Junk
  }
  mailbox Archive {
    auto = subscribe
    special_use = \\Archive
  }
}
CONF
    # --- Sieve (ManageSieve) ---
    # Opt-in (several instances share a machine; eas-stack.sh runs one too): with
    # DOVECOT_SIEVE_PORT set, ManageSieve listens there (users log in as for IMAP; scripts in
    # ~/sieve), and the LDA (/usr/lib/dovecot/dovecot-lda -c $DIR/dovecot.conf) runs each
    # user's active script. Vacation replies go to sendmail unless the LDA is given
    # -o submission_host=HOST:PORT.
    if [ -n "$SIEVE_PORT" ]; then
        cat >>"$DIR/dovecot.conf" <<CONF
protocols = \$protocols sieve
service managesieve-login {
  inet_listener sieve {
    address = 127.0.0.1
    port = $SIEVE_PORT
  }
}
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
}
protocol lda {
  mail_plugins = \$mail_plugins sieve
  postmaster_address = postmaster@localhost
}
CONF
    fi
    # --- end Sieve (ManageSieve) ---
    doveconf -c "$DIR/dovecot.conf" -n >/dev/null 2>"$DIR/doveconf.err" \
        || die "generated config is invalid: $(cat "$DIR/doveconf.err")"
}

start() {
    ensure_packages dovecot-core dovecot-imapd openssl dovecot-sieve dovecot-managesieved
    if pid_alive "$PIDFILE"; then
        log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$IMAP_PORT"
        return 0
    fi
    write_config
    # The master forks into the background; its stdio must not hold the caller's pipes.
    dovecot -c "$DIR/dovecot.conf" </dev/null >>"$DIR/dovecot.log" 2>&1 \
        || die "dovecot did not start; log tail: $(tail -n 20 "$DIR/dovecot.log")"
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$DIR/run/master.pid" ] && break
        sleep 0.1
    done
    [ -s "$DIR/run/master.pid" ] || die "dovecot wrote no master.pid; log tail: $(tail -n 20 "$DIR/dovecot.log")"
    cp "$DIR/run/master.pid" "$PIDFILE"
    wait_port "$IMAP_PORT" 20 && wait_port "$IMAPS_PORT" 20 \
        || die "dovecot is not listening on 127.0.0.1:$IMAP_PORT/$IMAPS_PORT; log tail: $(tail -n 20 "$DIR/dovecot.log")"
    if [ -n "$SIEVE_PORT" ]; then
        wait_port "$SIEVE_PORT" 20 \
            || die "dovecot is not listening for ManageSieve on 127.0.0.1:$SIEVE_PORT; log tail: $(tail -n 20 "$DIR/dovecot.log")"
    fi
    log "running (pid $(cat "$PIDFILE")): imap 127.0.0.1:$IMAP_PORT, imaps 127.0.0.1:$IMAPS_PORT, users: $(cut -d: -f1 "$DIR/users" | tr '\n' ' ')"
}

stop() {
    if pid_alive "$PIDFILE"; then
        stop_pidfile "$PIDFILE" 15
        log "stopped"
    else
        rm -f "$PIDFILE"
        log "not running"
    fi
}

status() {
    if pid_alive "$PIDFILE"; then
        echo "dovecot: up (pid $(cat "$PIDFILE")) imap 127.0.0.1:$IMAP_PORT imaps 127.0.0.1:$IMAPS_PORT"
    else
        echo "dovecot: down"
        return 1
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac

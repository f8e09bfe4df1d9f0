#!/usr/bin/env python3
"""Loopback SMTP sink for the EAS test stack.

Accepts mail for any recipient (no auth, no TLS), keeps every message as
SPOOL/<n>.eml plus SPOOL/<n>.json (envelope: sender, recipients, who got it),
and files a copy into the Dovecot INBOX of each recipient that is a local
test user, by IMAP APPEND as that user. APPEND rather than dovecot-lda so the
sink needs nothing from Dovecot's config, only its port and the passwords.

Standard library only (smtpd is deprecated in 3.11 and aiosmtpd is not on the
pyenv interpreter), so it runs on whatever python3 is first on PATH.

Environment:
  SINK_PORT     port on 127.0.0.1 to listen on
  SINK_SPOOL    folder for .eml/.json copies
  SINK_IMAP_PORT  Dovecot IMAP port on 127.0.0.1
  SINK_USERS    space-separated user:password pairs (the local users)
  SINK_DOMAIN   mail domain of the local users (example.test)
"""
import imaplib
import itertools
import json
import os
import socketserver
import sys
import threading
import time

PORT = int(os.environ["SINK_PORT"])
SPOOL = os.environ["SINK_SPOOL"]
IMAP_PORT = int(os.environ["SINK_IMAP_PORT"])
DOMAIN = os.environ.get("SINK_DOMAIN", "example.test").lower()
USERS = dict(
    pair.split(":", 1) for pair in os.environ.get("SINK_USERS", "").split() if ":" in pair
)
MAX_SIZE = 50 * 1024 * 1024

_seq = itertools.count(1)
_seq_lock = threading.Lock()


def log(msg):
    print(time.strftime("%Y-%m-%dT%H:%M:%S"), msg, file=sys.stderr, flush=True)


def local_user(address):
    """Returns the test user an envelope address belongs to, or None."""
    addr = address.strip().strip("<>").strip()
    local, _, domain = addr.rpartition("@")
    if not local:  # bare "bob"
        local, domain = addr, DOMAIN
    if domain.lower() != DOMAIN:
        return None
    return local if local in USERS else None


def deliver(user, data):
    imap = imaplib.IMAP4("127.0.0.1", IMAP_PORT)
    try:
        imap.login(user, USERS[user])
        typ, resp = imap.append("INBOX", None, None, data)
        if typ != "OK":
            raise RuntimeError(f"APPEND for {user}: {typ} {resp}")
    finally:
        try:
            imap.logout()
        except Exception:
            pass


def store(mail_from, rcpts, data, delivered):
    with _seq_lock:
        name = "%d-%06d" % (int(time.time() * 1000), next(_seq))
    with open(os.path.join(SPOOL, name + ".eml.tmp"), "wb") as f:
        f.write(data)
    with open(os.path.join(SPOOL, name + ".json"), "w") as f:
        json.dump({"mail_from": mail_from, "rcpt_to": rcpts, "delivered_to": delivered}, f)
    # Rename last, so a test polling for *.eml never sees a half-written file.
    os.rename(os.path.join(SPOOL, name + ".eml.tmp"), os.path.join(SPOOL, name + ".eml"))
    return name


class Session(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def read_data(self):
        lines = []
        size = 0
        while True:
            line = self.rfile.readline(MAX_SIZE)
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                return b"".join(lines)
            if line.startswith(b"."):  # undo dot-stuffing (RFC 5321 4.5.2)
                line = line[1:]
            size += len(line)
            if size > MAX_SIZE:
                return None
            lines.append(line)

    def handle(self):
        self.reply("220 eas-stack smtp sink ready")
        mail_from, rcpts = None, []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply("250-localhost")
                self.reply("250-8BITMIME")
                self.reply("250-SIZE %d" % MAX_SIZE)
                self.reply("250 SMTPUTF8")
            elif verb == "HELO":
                self.reply("250 localhost")
            elif verb == "MAIL" and arg.upper().startswith("FROM:"):
                mail_from = arg[5:].strip().split(" ")[0].strip("<>")
                rcpts = []
                self.reply("250 OK")
            elif verb == "RCPT" and arg.upper().startswith("TO:"):
                if mail_from is None:
                    self.reply("503 MAIL first")
                    continue
                rcpts.append(arg[3:].strip().split(" ")[0].strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                if not rcpts:
                    self.reply("503 RCPT first")
                    continue
                self.reply("354 end with <CRLF>.<CRLF>")
                data = self.read_data()
                if data is None:
                    return
                self.finish_message(mail_from, rcpts, data)
                mail_from, rcpts = None, []
            elif verb == "RSET":
                mail_from, rcpts = None, []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def finish_message(self, mail_from, rcpts, data):
        delivered, failed = [], []
        for user in dict.fromkeys(u for u in map(local_user, rcpts) if u):
            try:
                deliver(user, data)
                delivered.append(user)
            except Exception as e:  # report, keep the copy, let the client see 451
                log(f"delivery to {user} failed: {e!r}")
                failed.append(user)
        name = store(mail_from, rcpts, data, delivered)
        log(f"{name}: from={mail_from} rcpt={rcpts} delivered={delivered} failed={failed}")
        if failed:
            self.reply("451 local delivery failed for " + " ".join(failed))
        else:
            self.reply("250 OK queued as " + name)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    os.makedirs(SPOOL, exist_ok=True)
    with Server(("127.0.0.1", PORT), Session) as srv:
        log(f"listening on 127.0.0.1:{PORT}, local users {sorted(USERS)}@{DOMAIN}")
        srv.serve_forever()


if __name__ == "__main__":
    main()

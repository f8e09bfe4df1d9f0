#!/usr/bin/env python3
"""Enables QRESYNC once on a user's Dovecot mailboxes, for SOGo's sake.

SOGo's ActiveSync keys a folder "-1" and Sync returns nothing unless Dovecot
has already tracked modseqs for the mailbox; Dovecot starts doing that the
first time a QRESYNC-enabled session SELECTs it. So: log in, ENABLE QRESYNC,
SELECT each mailbox (all of them, or only those named).

usage: qresync-touch.py PORT USER PASSWORD [MAILBOX...]
"""
import imaplib
import re
import sys

LIST_RE = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<sep>"[^"]*"|NIL) (?P<name>.+)$')


def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailboxes(imap):
    typ, data = imap.list()
    if typ != "OK":
        raise SystemExit(f"LIST failed: {data}")
    names = []
    for item in data:
        if isinstance(item, tuple):  # name sent as a literal
            head, literal = item
            m = LIST_RE.match(head.rstrip() + b" x")
            flags, name = (m.group("flags") if m else b""), literal
        else:
            m = LIST_RE.match(item)
            if not m:
                continue
            flags, name = m.group("flags"), m.group("name")
            if name.startswith(b'"'):
                name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        if b"\\noselect" in flags.lower() or b"\\nonexistent" in flags.lower():
            continue
        names.append(name.decode())
    return names


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    port, user, password, wanted = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(user, password)
    typ, data = imap.enable("QRESYNC")
    if typ != "OK":
        raise SystemExit(f"{user}: ENABLE QRESYNC failed: {data}")
    names = wanted or mailboxes(imap)
    for name in names:
        typ, data = imap.select(quote(name))
        if typ != "OK":
            raise SystemExit(f"{user}: SELECT {name} failed: {data}")
    imap.logout()
    print(f"{user}: QRESYNC on {len(names)} mailbox(es): {' '.join(names)}")


if __name__ == "__main__":
    main()

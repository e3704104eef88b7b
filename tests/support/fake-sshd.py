#!/usr/bin/env python3
"""Writes sshd-like journal entries to a journald namespace, as a process named "sshd".

journald takes _COMM from /proc/<pid>/comm of the sender (a trusted field), so renaming this
process makes the entries match the shipped sshd filter's `_COMM=sshd` journalmatch, as they
would for a real sshd. Each line of standard input (or each argument after the socket path)
becomes one entry, sent as one datagram of journald's native protocol.

usage: fake-sshd.py /run/systemd/journal.NAME/socket [MESSAGE ...]   (else one per stdin line)
"""
import os
import re
import socket
import subprocess
import sys
import time

with open("/proc/self/comm", "w") as comm:
    comm.write("sshd")

path = sys.argv[1]
messages = sys.argv[2:] or [line.rstrip("\n") for line in sys.stdin]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for message in messages:
    datagram = (
        b"SYSLOG_IDENTIFIER=sshd\nPRIORITY=6\nMESSAGE=" + message.encode() + b"\n"
    )
    sock.sendto(datagram, path)

# journald reads _COMM from /proc/<pid>/comm when it processes a datagram, not when it was
# sent: if this process exited first, its entries would have no _COMM (and not match
# `_COMM=sshd`). So stay alive until journald has stored every entry sent (found by _PID,
# which comes from the socket credentials), or 30 s have passed.
namespace = re.fullmatch(r"/run/systemd/journal\.([^/]+)/socket", path)
deadline = time.monotonic() + 30
while namespace and time.monotonic() < deadline:
    stored = subprocess.run(
        ["journalctl", "--namespace=" + namespace.group(1), "_PID=%d" % os.getpid(), "-o", "cat"],
        capture_output=True,
    ).stdout.count(b"\n")
    if stored >= len(messages):
        break
    time.sleep(0.05)
if not namespace:
    time.sleep(1)

#!/usr/bin/env python3
"""Writes sshd-like journal entries to a journald namespace, as a process named "sshd".

journald takes _COMM from /proc/<pid>/comm of the sender (a trusted field), so renaming this
process makes the entries match the shipped sshd filter's `_COMM=sshd` journalmatch, as they
would for a real sshd. Each line of standard input (or each argument after the socket path)
becomes one entry, sent as one datagram of journald's native protocol.

usage: fake-sshd.py /run/systemd/journal.NAME/socket [MESSAGE ...]   (else one per stdin line)
"""
import socket
import sys

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

#!/usr/bin/env python3
"""A whois server (RFC 3912: one query line in, text out, close) for the mail tests
(tests/actions.rs), run on loopback in the server's network namespace, queried by the real
`whois -h 127.0.0.1 -p PORT`.

Its answer is hostile on purpose, as a registrant may write it: CR/LF followed by header
lines, a lone dot, shell code, a terminal escape and NUL. Each query is appended to LOG.
It prints "ready" once listening.

usage: whois-server.py PORT LOG
"""
import socketserver
import sys

PORT = int(sys.argv[1])
LOG = sys.argv[2]

ANSWER = (
    "% banhound test whois server\r\n"
    "inetnum: {query}\r\n"
    "netname: TEST-NET\r\n"
    "descr: evil\rBcc: whois-injected@banhound.test\r\n"
    ".\r\n"
    "remarks: $(touch /tmp/whois-pwned) `id` ;rm -rf /\r\n"
    "remarks: \x1b]0;pwned\x07 \x00 end\r\n"
)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        query = self.rfile.readline(1000).decode("ascii", "replace").strip()
        with open(LOG, "a") as log:
            log.write(query + "\n")
        self.wfile.write(ANSWER.format(query=query).encode("utf-8"))


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


server = Server(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()

#!/usr/bin/env python3
"""A small HTTP server for the webhook tests (tests/actions.rs), run on loopback in the
server's network namespace.

Every request is appended to LOG as one JSON line: {"path", "headers", "body", "status"}.
Paths: /ok answers 200; /flaky answers 500 to its first request, then 200; /hang never
answers. It prints "ready" once listening.

usage: webhook-server.py PORT LOG
"""
import http.server
import json
import sys
import threading
import time

PORT = int(sys.argv[1])
LOG = sys.argv[2]
lock = threading.Lock()
seen = {}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        with lock:
            seen[self.path] = seen.get(self.path, 0) + 1
            count = seen[self.path]
        if self.path == "/hang":
            status = None
        elif self.path == "/flaky" and count == 1:
            status = 500
        else:
            status = 200
        with lock, open(LOG, "a") as log:
            log.write(json.dumps({"path": self.path, "headers": dict(self.headers),
                                  "body": body, "status": status}) + "\n")
        if status is None:
            time.sleep(3600)
            return
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()

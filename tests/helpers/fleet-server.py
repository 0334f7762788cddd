#!/usr/bin/env python3
"""The fleet server of kvmbox's tests (Python's standard library only): serves the
files under ROOT by GET, stores each POST to /report/NAME as ROOT/reports/NAME,
answers /redirect?to=URL with a 302 to URL (to test that kvmbox refuses
redirects to another host), and /stall/NAME with the first KiB of NAME, then
nothing for two minutes (a transfer that stalls). Binds 127.0.0.1 only; prints its port, then serves
until killed. With --late FILE, it starts serving only once FILE exists (a
server that comes up late: until then, connections to its port are refused).
Each request is logged to ROOT/../fleet-server.log, or to FILE with --log FILE
(one server per client, when clients must be told apart: QEMU's user network
shows every guest as 127.0.0.1).

    fleet-server.py ROOT [--late FILE] [--log FILE]"""
import http.server
import os
import socket
import sys
import time
import urllib.parse

ROOT = os.path.abspath(sys.argv[1])
OPTIONS = dict(zip(sys.argv[2::2], sys.argv[3::2]))
LOG = OPTIONS.get("--log") or os.path.join(ROOT, "..", "fleet-server.log")


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=ROOT, **kwargs)

    def log_message(self, fmt, *args):
        with open(LOG, "a") as log:
            log.write("%s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/redirect":
            to = urllib.parse.parse_qs(url.query).get("to", [""])[0]
            self.send_response(302)
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path.startswith("/stall/"):
            with open(os.path.join(ROOT, url.path[len("/stall/"):]), "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:1024])
            self.wfile.flush()
            time.sleep(120)
            return
        super().do_GET()

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(parts) != 2 or parts[0] != "report" or not parts[1] or "." in parts[1]:
            self.send_error(404)
            return
        os.makedirs(os.path.join(ROOT, "reports"), exist_ok=True)
        with open(os.path.join(ROOT, "reports", parts[1]), "wb") as out:
            out.write(body)
        self.send_response(204)
        self.end_headers()


late = OPTIONS.get("--late")
port = 0
if late:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    print(port, flush=True)
    while not os.path.exists(late):
        time.sleep(0.2)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
if not late:
    print(server.server_address[1], flush=True)
server.serve_forever()

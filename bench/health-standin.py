#!/usr/bin/env python3
"""A stand-in for the LLMChat backend's health endpoints, for the scrape
benchmarks: /health, /health/db and /health/redis answer healthy, with
keep-alive and TCP_NODELAY as Node does (else 40 ms delayed-ACK stalls).
usage: health-standin.py PORT"""
import http.server
import sys


class Health(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        body = (b'{"status":"healthy","checks":[{"name":"database","status":"healthy"}]}'
                if self.path == "/health" else b'{"status":"healthy"}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()

#!/usr/bin/env python3
"""An OTLP/HTTP profiles receiver for the exporter's tests, on the official
opentelemetry-proto messages: POST /v1development/profiles with a gzipped
(or plain) protobuf ExportProfilesServiceRequest. Each accepted request's
summary (decode_otlp_profiles.summarize) plus its headers is appended as one
JSON line to OUT. The first REFUSE requests are answered 503 (an outage).

usage: otlp_receiver.py OUT [REFUSE]   (prints "PORT <n>" once listening)
"""
import gzip
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decode_otlp_profiles import summarize  # noqa: E402

OUT = sys.argv[1]
REFUSE = [int(sys.argv[2]) if len(sys.argv) > 2 else 0]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if REFUSE[0] > 0:
            REFUSE[0] -= 1
            self.send_response(503)
            self.end_headers()
            return
        if self.path != "/v1development/profiles":
            self.send_response(404)
            self.end_headers()
            return
        try:
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            summary = summarize(body)
        except Exception as error:  # a request the official messages cannot read
            with open(OUT + ".errors", "a") as handle:
                handle.write(repr(error) + "\n")
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        summary["path"] = self.path
        summary["headers"] = {key.lower(): value for key, value in self.headers.items()}
        with open(OUT, "a") as handle:
            handle.write(json.dumps(summary, sort_keys=True) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()

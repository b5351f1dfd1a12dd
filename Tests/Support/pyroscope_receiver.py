#!/usr/bin/env python3
"""A receiver of Pyroscope's documented ingest contract for the exporters'
tests (Grafana Pyroscope itself is not installed here): POST /ingest with
query `name`, `from`, `until`, `format`, `sampleRate`, `spyName` and a
multipart/form-data field `profile`. Each upload's profile is written to
OUT_DIR as `<from>-<until>-<n>.pb.gz`, its query as one JSON line to
OUT_DIR/uploads.jsonl.

usage: pyroscope_receiver.py OUT_DIR   (prints "PORT <n>" once listening)
"""
import email.parser
import email.policy
import json
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OUT = sys.argv[1]
COUNT = [0]


def profile_part(content_type, body):
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "profile":
            return part.get_payload(decode=True)
    return None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        profile = profile_part(self.headers.get("Content-Type", ""), body) if url.path == "/ingest" else None
        if profile is None:
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        COUNT[0] += 1
        name = "%s-%s-%d.pb.gz" % (query.get("from", "0"), query.get("until", "0"), COUNT[0])
        with open(os.path.join(OUT, name), "wb") as handle:
            handle.write(profile)
        query["file"] = name
        with open(os.path.join(OUT, "uploads.jsonl"), "a") as handle:
            handle.write(json.dumps(query, sort_keys=True) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()

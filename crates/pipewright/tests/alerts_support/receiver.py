"""A local HTTP server standing in for Slack, SendGrid and webhook receivers: each POST is
written to DIR as NNNN.json ({path, headers, body}) and answered 200 (or, for a path
starting with /fail, 500). Usage: receiver.py PORT DIR"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, out = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            n = len(os.listdir(out))
            record = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            tmp = os.path.join(out, f".{n:04}.tmp")
            with open(tmp, "w") as f:
                json.dump(record, f)
            os.rename(tmp, os.path.join(out, f"{n:04}.json"))
        status = 500 if self.path.startswith("/fail") else 200
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()

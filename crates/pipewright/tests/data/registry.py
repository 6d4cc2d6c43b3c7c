"""A Docker registry serving one image to pull, for tests (nothing can be pulled from the
internet here). Also a meeting point for two jobs: `GET /mark/NAME` marks, `GET /wait/NAME`
answers once NAME is marked (404 after 60 s).

usage: registry.py SAVED.tar NAME TAG PORT_FILE [USER:PASSWORD]

With USER:PASSWORD, pulls need them (HTTP basic authentication, as Docker speaks it).

SAVED.tar is a `docker save` of a local image; the image served gets a label of its own
(`pipewright.test.served`), so it is not the saved image under another name.
"""

import base64
import gzip
import hashlib
import json
import os
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

saved, name, tag, port_file = sys.argv[1:5]
credentials = sys.argv[5] if len(sys.argv) > 5 else None
with tarfile.open(saved) as t:
    manifest = json.load(t.extractfile("manifest.json"))[0]
    config = json.load(t.extractfile(manifest["Config"]))
    layers = [t.extractfile(layer).read() for layer in manifest["Layers"]]

blobs = {}


def add(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest


config.setdefault("config", {}).setdefault("Labels", {})
config["config"]["Labels"] = dict(config["config"]["Labels"] or {}, **{"pipewright.test.served": name})
config_bytes = json.dumps(config).encode()
described = []
for raw in layers:
    packed = gzip.compress(raw, mtime=0)
    described.append(
        {
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": len(packed),
            "digest": add(packed),
        }
    )
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
image_manifest = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config_bytes),
            "digest": add(config_bytes),
        },
        "layers": described,
    }
).encode()
manifest_digest = "sha256:" + hashlib.sha256(image_manifest).hexdigest()

marks = set()
marked = threading.Condition()


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body=b"", content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.startswith("/v2/") and credentials:
            expected = "Basic " + base64.b64encode(credentials.encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self.answer(
                    401,
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                    headers=[("WWW-Authenticate", 'Basic realm="pipewright-test"')],
                )
        if path == "/v2/":
            return self.answer(200, b"{}")
        if path in (f"/v2/{name}/manifests/{tag}", f"/v2/{name}/manifests/{manifest_digest}"):
            return self.answer(
                200,
                image_manifest,
                MANIFEST_TYPE,
                [("Docker-Content-Digest", manifest_digest)],
            )
        prefix = f"/v2/{name}/blobs/"
        if path.startswith(prefix) and path[len(prefix):] in blobs:
            digest = path[len(prefix):]
            return self.answer(
                200, blobs[digest], "application/octet-stream", [("Docker-Content-Digest", digest)]
            )
        if path.startswith("/mark/"):
            with marked:
                marks.add(path[len("/mark/"):])
                marked.notify_all()
            return self.answer(200, b"marked\n", "text/plain")
        if path.startswith("/wait/"):
            with marked:
                ok = marked.wait_for(lambda: path[len("/wait/"):] in marks, timeout=60)
            return self.answer(200 if ok else 404, b"", "text/plain")
        return self.answer(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}')

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".new", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".new", port_file)
server.serve_forever()

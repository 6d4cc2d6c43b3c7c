"""Screenshots of a pipewright dashboard in headless Chromium, for the README (run by
scripts/demo). Drives chromedriver over the W3C WebDriver protocol with the standard
library only: signs in, then saves each page given as NAME=PATH to DIR/NAME.png.

Usage: screenshots.py BASE_URL USER PASSWORD DIR NAME=PATH...
"""

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Driver:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["chromedriver", f"--port={self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                self.call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        args.append("--window-size=1280,900")
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": args}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)["value"] or {}

    def s(self, method: str, path: str, body: dict | None = None) -> dict:
        return self.call(method, f"/session/{self.session}{path}", body)

    def go(self, url: str) -> None:
        self.s("POST", "/url", {"url": url})

    def type(self, css: str, text: str) -> None:
        found = self.s("POST", "/element", {"using": "css selector", "value": css})
        element = next(iter(found.values()))
        self.s("POST", f"/element/{element}/value", {"text": text})

    def save(self, path: str) -> None:
        png = base64.b64decode(self.s("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)

    def quit(self) -> None:
        try:
            self.s("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait()


def main() -> int:
    base, user, password, out, *pages = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    d = Driver()
    try:
        d.go(f"{base}/login")
        d.type("input[name=username]", user)
        # Enter submits the form.
        d.type("input[name=password]", password + "\ue007")
        time.sleep(1)
        for page in pages:
            name, path = page.split("=", 1)
            d.go(base + path)
            time.sleep(1.5)  # the live parts (logs, charts) fill in
            d.save(os.path.join(out, f"{name}.png"))
            print(f"{out}/{name}.png ({base}{path})")
    finally:
        d.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The measurements of bench/dashboard.sh: the pages against the JSON API over one kept-alive
connection each, and the log in headless Chromium driven over WebDriver (chromedriver's HTTP
API, no client library). Prints a Markdown table."""

import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

url, token, big, pw, pid = sys.argv[1:6]
u = urllib.parse.urlsplit(url)
host, port = u.hostname, u.port


def request(conn, method, path, headers=None, body=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    return r.status, r.getheaders(), data


def cookie_of(headers, name):
    for k, v in headers:
        if k.lower() == "set-cookie" and v.startswith(name + "="):
            return v.split(";")[0]
    return None


# Signing in as the first admin, through the form.
c = http.client.HTTPConnection(host, port)
status, headers, page = request(c, "GET", "/login")
pre = cookie_of(headers, "pw_login")
csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
form = urllib.parse.urlencode(
    {"username": "admin", "password": "bench-password-1", "csrf": csrf, "next": "/"}
)
status, headers, _ = request(
    c,
    "POST",
    "/login",
    {"Cookie": pre, "Content-Type": "application/x-www-form-urlencoded"},
    form,
)
session = cookie_of(headers, "pw_session")
assert status == 303 and session, (status, headers)
page_h = {"Cookie": session}
api_h = {"Authorization": f"Bearer {token}"}


def timed(path, headers, n=200):
    conn = http.client.HTTPConnection(host, port)
    for _ in range(10):
        status, _, _ = request(conn, "GET", path, headers)
        assert status == 200, (path, status)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        request(conn, "GET", path, headers)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.95)]


def ms(p):
    return f"{p[0]:.1f} / {p[1]:.1f} ms"


rows = []
runs_page = timed("/runs", page_h)
rows.append(("runs page, first 50 of 100,001 runs (p50 / p95)", ms(runs_page),
             ms(timed("/api/v1/runs?limit=50", api_h)), "p95 < 50 ms"))
rows.append(("runs page filtered: development, pull_request, failure", ms(
    timed("/runs?repo=bench%2Fapp&branch=development&event=pull_request&status=failure", page_h)),
    "-", "p95 < 50 ms"))
rows.append(("runs page, older: before run 50,000", ms(timed("/runs?before=50000", page_h)),
             "-", "p95 < 50 ms"))
rows.append((f"run page with a 10 MB log (HTML)", ms(timed(f"/runs/{big}", page_h, 100)),
             ms(timed(f"/api/v1/runs/{big}", api_h, 100)), ""))


def stream(path, headers, until=None):
    conn = http.client.HTTPConnection(host, port)
    t = time.perf_counter()
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    size = 0
    tail = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        size += len(chunk)
        tail = (tail + chunk)[-64:]
        if until and until in tail:
            break
    conn.close()
    return (time.perf_counter() - t) * 1000, size


def median_of(f, n=5):
    xs = [f() for _ in range(n)]
    return statistics.median(x[0] for x in xs), xs[0][1]


sse_ms, sse_size = median_of(lambda: stream(f"/api/v1/runs/{big}/logs?follow=true", page_h, b"event: done"))
txt_ms, txt_size = median_of(lambda: stream(f"/api/v1/runs/{big}/logs", api_h))
rows.append((f"the 10 MB log, all of it (median of 5)",
             f"{sse_ms:.0f} ms (event stream, {sse_size / 1e6:.1f} MB)",
             f"{txt_ms:.0f} ms (text, {txt_size / 1e6:.1f} MB)", ""))
rows.append(("the 10 MB log's last 2,000 lines, what the run page fetches (p50 / p95 of 20)",
             ms(timed(f"/api/v1/runs/{big}/logs?tail=2000", page_h, 20)),
             ms(timed(f"/api/v1/runs/{big}/logs?tail=2000", api_h, 20)), ""))

# The browser.
s = socket.socket()
s.bind(("127.0.0.1", 0))
wd_port = s.getsockname()[1]
s.close()
driver = subprocess.Popen(["chromedriver", f"--port={wd_port}"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
wd = f"http://127.0.0.1:{wd_port}"


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(wd + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())["value"]
    except urllib.error.HTTPError as e:
        sys.exit(f"chromedriver: {method} {path}: {e.read().decode(errors='replace')[:2000]}")


try:
    for _ in range(100):
        try:
            call("GET", "/status")
            break
        except OSError:
            time.sleep(0.05)
    sid = call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900"]}}}})["sessionId"]
    call("POST", f"/session/{sid}/timeouts", {"script": 120000, "pageLoad": 120000})
    call("POST", f"/session/{sid}/url", {"url": url + "/login"})
    name, value = session.split("=", 1)
    call("POST", f"/session/{sid}/cookie", {"cookie": {"name": name, "value": value}})
    # From navigation to the 10 MB log's last line on screen.
    last_line = """
        const done = arguments[arguments.length - 1];
        const look = () => {
          const lines = document.querySelector('#log details.job .lines');
          const last = lines && lines.lastElementChild;
          if (last && last.textContent.includes('Ten megabytes: success')) done(performance.now());
          else if (performance.now() > 100000) done('not shown: ' + (last ? last.textContent : document.body.innerText.slice(0, 500)));
          else setTimeout(look, 5);
        };
        look();
    """
    shown = []
    for _ in range(5):
        call("POST", f"/session/{sid}/url", {"url": f"{url}/runs/{big}"})
        got = call("POST", f"/session/{sid}/execute/async", {"script": last_line, "args": []})
        if isinstance(got, str):
            sys.exit(f"the 10 MB log: {got}")
        shown.append(got)
    rows.append(("the 10 MB run page in Chromium: navigation to last line shown (median of 5)",
                 f"{statistics.median(shown):.0f} ms", "-", "< 200 ms"))
    # A live line: printed with its clock, seen by the page's script as it is added.
    out = subprocess.run([pw, "dispatch", "bench/app", "live.yml"], capture_output=True, text=True,
                         check=True).stdout
    live = re.search(r"\d+", out).group(0)
    call("POST", f"/session/{sid}/url", {"url": f"{url}/runs/{live}"})
    delays = call("POST", f"/session/{sid}/execute/async", {"script": """
        const done = arguments[arguments.length - 1];
        const start = Date.now() + 1000, delays = [];
        new MutationObserver((records, observer) => {
          const now = Date.now();
          for (const r of records) for (const n of r.addedNodes) {
            const m = /tick (\\d+)/.exec(n.textContent || '');
            if (m && Number(m[1]) > start) delays.push(now - Number(m[1]));
          }
          if (delays.length >= 100) { observer.disconnect(); done(delays); }
        }).observe(document.getElementById('log'), {childList: true, subtree: true});
    """, "args": []})
    delays.sort()
    rows.append(("a printed line on an open page in Chromium: delay, median / p95 of 100",
                 f"{delays[len(delays) // 2]:.0f} / {delays[int(len(delays) * 0.95)]:.0f} ms", "-",
                 "< 100 ms"))
    call("DELETE", f"/session/{sid}")
finally:
    driver.terminate()
    driver.wait()

time.sleep(12)  # an idle server: the allocator trims its heap every 10 s
with open(f"/proc/{pid}/status") as f:
    status = {l.split(":")[0]: l.split()[1] for l in f if l.startswith(("VmRSS:", "RssAnon:", "RssFile:"))}
mib = lambda k: int(status[k]) / 1024
rows.append(("server RSS, idle after all the above",
             f"{mib('VmRSS'):.1f} MiB ({mib('RssAnon'):.1f} heap and stacks, {mib('RssFile'):.1f} code and files)",
             "-", "< 20 MiB"))

print("| Measured | Dashboard | JSON API | Goal |")
print("|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")

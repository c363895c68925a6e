"""What hostile, unauthenticated traffic costs a running service: one figure per attack, for a
before/after table. Runs any agent-api binary (`--binary`, default the release build), each
attack on a fresh process with the demo data."""

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

from kit import BIN, app_env, free_port, log, psql, run, url_with_database

DEMO_TENANT = "f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf"


class Target:
    """A service process of `binary` on the demo data; `metrics` is wherever it serves them."""

    def __init__(self, binary, database_url, **extra):
        self.port = free_port()
        self.ops_port = free_port()
        env = app_env(database_url, APP__SERVER__HOST="127.0.0.1", APP__SERVER__PORT=self.port,
                      APP__OPS__PORT=self.ops_port, APP__LOG__LEVEL="info", **extra)
        self.log_path = f"/tmp/agent-api-hostile-{self.port}.log"
        with open(self.log_path, "w") as log_file:
            self.process = subprocess.Popen([binary, "serve"], env=env, stdout=log_file)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(1)

    def rss_kib(self):
        status = open(f"/proc/{self.process.pid}/status").read()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))

    def cpu_seconds(self):
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100

    def logged_bytes(self):
        return os.path.getsize(self.log_path)

    def metrics(self):
        for port in (self.ops_port, self.port):
            try:
                started = time.monotonic()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                    text = response.read().decode()
                return text, time.monotonic() - started
            except urllib.error.URLError:
                continue
        raise SystemExit("no /metrics anywhere")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        os.unlink(self.log_path)


def raw(port, payload, read=True):
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(payload)
        return sock.recv(65536) if read else b""


def many(count, work, threads=8):
    def worker(start):
        for n in range(start, count, threads):
            work(n)
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def labels(target):
    before_rss = target.rss_kib()
    many(20_000, lambda n: raw(target.port, f"M{n} /nope/{n} HTTP/1.1\r\nHost: x\r\n"
                                            f"Connection: close\r\n\r\n".encode()))
    text, seconds = target.metrics()
    return (f"20,000 requests `M<i> /nope/<i>`: RSS {before_rss / 1024:.0f} → "
            f"{target.rss_kib() / 1024:.0f} MB; /metrics {len(text) / 1024:.0f} KiB "
            f"in {seconds * 1000:.0f} ms")


def trickle(target):
    connections = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", target.port))
        sock.sendall(b"GET /agent-api/tenant HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n")
        sock.settimeout(0.05)
        connections.append(sock)
    open_after = 0
    for second in range(10):
        time.sleep(1)
        open_after = 0
        for sock in connections:
            try:
                sock.sendall(b"6\r\nabcdef\r\n")
                while sock.recv(65536):
                    pass
                # recv returned nothing: the server closed it.
            except socket.timeout:
                open_after += 1
            except OSError:
                pass
    for sock in connections:
        sock.close()
    return f"{open_after} of 200 trickling connections open after 10 s"


def swagger(target):
    request = urllib.request.Request(f"http://127.0.0.1:{target.port}/docs/swagger-ui-bundle.js",
                                     headers={"Accept-Encoding": "br"})
    urllib.request.urlopen(request).read()
    before = target.cpu_seconds()
    started = time.monotonic()
    many(200, lambda _: urllib.request.urlopen(request).read(), threads=4)
    elapsed = time.monotonic() - started
    spent = target.cpu_seconds() - before
    return (f"{spent / 200 * 1000:.1f} ms of CPU per brotli request of the 1.5 MB bundle, "
            f"{200 / elapsed:.0f} req/s at 4 connections")


def logs(target):
    kid = "k" * 8192
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "kid": kid}).encode()).rstrip(b"=").decode()
    before = target.logged_bytes()

    def refused(n):
        headers = {"Authorization": f"Bearer {header}.e30.c2ln"} if n % 2 == 0 else {}
        request = urllib.request.Request(
            f"http://127.0.0.1:{target.port}/agent-api/tenant/{DEMO_TENANT}/callerline",
            headers=headers)
        try:
            urllib.request.urlopen(request)
        except urllib.error.HTTPError:
            pass
    many(2000, refused, threads=4)
    time.sleep(6)
    return f"{(target.logged_bytes() - before) / 2000:.0f} bytes of log per refused request"


def legacy_statements(target):
    def statements():
        text, _ = target.metrics()
        return sum(float(v) for v in re.findall(
            r'^agent_api_db_query_duration_seconds_count\{[^}]*\} ([\d.]+)$', text, re.M))
    before = statements()
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{target.port}/agent-api/callerline")
        except urllib.error.HTTPError:
            pass
    return f"{statements() - before:.0f} statements for 100 requests without a token"


def cache_pages(target, token):
    before = target.rss_kib()
    def fetch(n):
        request = urllib.request.Request(
            f"http://127.0.0.1:{target.port}/agent-api/tenant/{DEMO_TENANT}/callerline"
            f"?per_page=1&page={n + 1}", headers={"Authorization": f"Bearer {token}"})
        urllib.request.urlopen(request).read()
    many(150_000, fetch, threads=8)
    return (f"150,000 distinct pages with a 16 MiB bound: RSS +{(target.rss_kib() - before) / 1024:.0f} MB")


def refused_codings(target):
    request = urllib.request.Request(
        f"http://127.0.0.1:{target.port}/agent-api/tenant/{DEMO_TENANT}/callerline",
        headers={"Accept-Encoding": "identity;q=0, *;q=0"})
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as error:
        body = error.read()[:60]
        status = error.code
    head = urllib.request.Request(
        f"http://127.0.0.1:{target.port}/agent-api/tenant/{DEMO_TENANT}/callerline",
        method="HEAD")
    try:
        urllib.request.urlopen(head)
    except urllib.error.HTTPError as error:
        head_status = error.code
    return f"no acceptable coding: {status} {body[:24]!r}…; HEAD: {head_status}"


ATTACKS = [("metric labels", labels), ("trickled bodies", trickle),
           ("Swagger UI assets", swagger), ("log amplification", logs),
           ("legacy route before authentication", legacy_statements),
           ("refused codings, HEAD", refused_codings)]


def hostile(args, admin_url):
    binary = args.binary or str(BIN)
    database = "agent_api_bench_hostile"
    url = url_with_database(admin_url, database)
    psql(admin_url, f'drop database if exists "{database}"')
    psql(admin_url, f'create database "{database}"')
    run(binary, "migrate", env=app_env(url))
    run(binary, "seed-demo", env=app_env(url))
    token = run(binary, "token", "issue", "--partner", "00000000-0000-0000-0000-000000000001",
                env=app_env(url)).strip()
    print(f"\nbinary: {binary}")
    for name, attack in ATTACKS:
        log(name)
        target = Target(binary, url, APP__RATE_LIMIT__ENABLED="false",
                        APP__LEGACY__CALLERLINE="on")
        try:
            print(f"{name:<36} {attack(target)}", flush=True)
        finally:
            target.stop()
    log("kept pages")
    target = Target(binary, url, APP__RATE_LIMIT__ENABLED="false")
    try:
        print(f"{'listing cache bound':<36} {cache_pages(target, token)}", flush=True)
    finally:
        target.stop()

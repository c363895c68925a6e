"""What the benchmark modes share: processes, the data set, tokens, the service, wrk, pgbench."""

import base64
import hashlib
import hmac
import json
import math
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "agent-api"
SECRET = "bench-secret-bench-secret-bench-secret-0123"


def log(message):
    print(f"==> {message}", file=sys.stderr, flush=True)


def run(*args, env=None, capture=True):
    result = subprocess.run(args, env=env, text=True, capture_output=capture)
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def url_with_database(url, name):
    return re.sub(r"^([a-z]+://[^/]*)/?[^?]*", rf"\g<1>/{name}", url)


def psql(url, sql):
    return run("psql", "-qAtX", url, "-c", sql).strip()


def app_env(database_url, **extra):
    env = dict(os.environ, DATABASE_URL=database_url, APP__AUTH__JWT_SECRET=SECRET)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_database(admin_url, lines, reload):
    name = f"agent_api_bench_{lines}"
    url = url_with_database(admin_url, name)
    exists = psql(admin_url, f"select 1 from pg_database where datname = '{name}'") == "1"
    loaded = exists and psql(url, "select count(*) > 0 from caller_lines") == "t"
    if loaded and not reload:
        log(f"using the loaded data set in {name}")
        run(BIN, "migrate", env=app_env(url))
        return url
    psql(admin_url, f'drop database if exists "{name}"')
    psql(admin_url, f'create database "{name}"')
    run(BIN, "migrate", env=app_env(url))
    log(f"loading {lines:,} caller lines into {name}")
    started = time.monotonic()
    run("psql", "-qX", url, "-v", f"lines={lines}", "-v", "tenants=10", "-v", "partners=500",
        "-f", ROOT / "bench" / "generate.sql")
    log(f"loaded in {time.monotonic() - started:.0f} s")
    return url


def list_statement():
    """The caller-line list statement exactly as the handler sends it (from .sqlx)."""
    for path in sorted((ROOT / ".sqlx").glob("query-*.json")):
        query = json.loads(path.read_text())["query"]
        if "token_partner($1, $2)" in query and "l.call_line" in query:
            return query
    sys.exit("the list statement is not in .sqlx/")


def token(partner, issued_at):
    """An HS256 token for `partner` issued at `issued_at` (Unix seconds), valid three hours."""
    def b64(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    signed = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}." \
             f"{b64({'sub': partner, 'iat': issued_at, 'exp': issued_at + 3 * 3600})}"
    signature = hmac.new(SECRET.encode(), signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def targets(rows, issue_times=1):
    """(path, token) per row; with several issue times, each row once per token, interleaved so
    that consecutive requests of a partner carry tokens of different issue times."""
    now = int(time.time())
    return [(f"/agent-api/tenant/{t}/callerline?page={page}&per_page=15",
             token(p, now - 60 - k))
            for k in range(issue_times) for p, t, page in rows]


class Service:
    """`agent-api serve` on a free loopback port, with production settings but the rate limit."""

    def __init__(self, database_url, pool_size, log_level, listing_cache, binary=BIN, port=None,
                 memory_bypassed=False, **extra):
        self.port = port or free_port()
        self.ops_port = free_port()
        env = app_env(database_url, APP__SERVER__HOST="127.0.0.1", APP__SERVER__PORT=self.port,
                      APP__OPS__PORT=self.ops_port,
                      APP__RATE_LIMIT__ENABLED="false", APP__LOG__LEVEL=log_level,
                      APP__DATABASE__MAX_CONNECTIONS=pool_size,
                      APP__LISTING_CACHE__ENABLED=str(listing_cache == "on").lower(), **extra)
        # Logs are formatted and written as in production, to /dev/null.
        self.process = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL)
        self.wait_ready(memory_bypassed)

    def wait_ready(self, memory_bypassed=False):
        """Until it is ready and, unless its memory is meant to be bypassed, trusts memory."""
        for _ in range(400):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz") as response:
                    if memory_bypassed or json.load(response).get("listing_cache") != "bypassed":
                        return
            except OSError:
                pass
            time.sleep(0.05)
        sys.exit("agent-api did not become ready")

    def cpu_seconds(self):
        """CPU time the service's threads have run (the scheduler's own count, in ns)."""
        tasks = Path(f"/proc/{self.process.pid}/task").glob("*/schedstat")
        return sum(int(task.read_text().split()[0]) for task in tasks) / 1e9

    def memory_kib(self, field):
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ops_port}/metrics") as response:
            return response.read().decode()

    def cache_outcomes(self):
        """The listing cache's counters: {outcome: count}."""
        return {outcome: float(count) for outcome, count in re.findall(
            r'^agent_api_listing_cache_total\{outcome="(\w+)"\} ([\d.]+)$', self.metrics(),
            re.M)}

    def statements(self):
        """Statements run so far: {statement: count}."""
        return {name: float(count) for name, count in re.findall(
            r'^agent_api_db_query_duration_seconds_count\{statement="(\w+)"\} ([\d.]+)$',
            self.metrics(), re.M)}

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


class Proxy(threading.Thread):
    """A TCP proxy on a free loopback port before `target_port`: every chunk passed on `delay`
    seconds after it arrived, each way, without slowing the flow; `cut()` swallows every byte
    both ways (nothing is closed, as a firewall dropping the flow) until `heal()`."""

    def __init__(self, target_port, delay=0.0):
        super().__init__(daemon=True)
        self.target_port = target_port
        self.delay = delay
        self.swallowing = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.start()

    def run(self):
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, server), (server, client)):
                chunks = queue.Queue()
                threading.Thread(target=self.read, args=(source, chunks), daemon=True).start()
                threading.Thread(target=self.write, args=(sink, chunks), daemon=True).start()

    def read(self, source, chunks):
        try:
            while data := source.recv(65536):
                if not self.swallowing.is_set():
                    chunks.put((time.monotonic() + self.delay, data))
        except OSError:
            pass  # either side closed
        chunks.put((0, b""))

    @staticmethod
    def write(sink, chunks):
        while True:
            due, data = chunks.get()
            if not data:
                sink.close()
                return
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                sink.sendall(data)
            except OSError:
                return

    def cut(self):
        self.swallowing.set()

    def heal(self):
        self.swallowing.clear()


def through(url, port):
    """`url` with its host and port replaced by 127.0.0.1:`port` (a proxy before it)."""
    host_port = url.split("@")[1].split("/")[0]
    return url.replace(host_port, f"127.0.0.1:{port}", 1)


def port_of(url):
    return int(url.split("@")[1].split("/")[0].split(":")[1])


def postgres_program(name):
    """A Postgres program of the newest version on the PATH, run as the postgres user when the
    bench runs as root (Postgres refuses root)."""
    bin_dir = Path(run("sh", "-c", "dirname $(readlink -f $(command -v pg_ctl))").strip())
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return [*as_postgres, str(bin_dir / name)]


def own_directory(prefix):
    """A new temporary directory a cluster of the bench's own may live in."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    return directory


def wrk(port, target_list, connections, seconds, accept_encoding=None):
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as file:
        for path, bearer in target_list:
            file.write(f"{path}\t{bearer}\n")
    env = dict(os.environ, TARGETS=file.name, ACCEPT_ENCODING=accept_encoding or "")
    output = run("wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                 "-s", ROOT / "bench" / "rotate.lua", f"http://127.0.0.1:{port}", env=env)
    os.unlink(file.name)
    fields = dict(re.findall(r"(\w+)=([\d.]+)", output.split("RESULT", 1)[1]))
    fields = {k: float(v) for k, v in fields.items()}
    fields["rps"] = fields["requests"] / fields["seconds"]
    return fields


def pgbench(database_url, statement, rows, connections, seconds):
    """tps of the handler's statement, prepared as sqlx prepares it, at the same concurrency.

    One pgbench process per connection, each bound to one target through -D variables, so the
    statement and its parameters are exactly the handler's (pgbench 15 cannot mix -M prepared
    with several scripts). The absent filters ($4, $5) are written as null. Sessions plan as
    the service's pool does (plan_cache_mode=force_generic_plan).
    """
    env = dict(os.environ, PGOPTIONS="-c plan_cache_mode=force_generic_plan")
    sql = statement.replace("$4", "null").replace("$5", "null")
    for n in (7, 6, 3, 2, 1):
        sql = sql.replace(f"${n}", f":p{n}")
    with tempfile.TemporaryDirectory() as directory:
        script = Path(directory) / "list.sql"
        # pgbench reads a statement from one line: drop the -- comments, then join.
        sql = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
        script.write_text(" ".join(sql.split()) + ";\n")
        processes = []
        for n in range(connections):
            partner, tenant, page = rows[n % len(rows)]
            variables = {"p1": partner, "p2": "2030-01-01T00:00:00Z", "p3": tenant,
                         "p6": 15, "p7": (page - 1) * 15}
            defines = [arg for k, v in variables.items() for arg in ("-D", f"{k}={v}")]
            processes.append(subprocess.Popen(
                ["pgbench", "-n", "-M", "prepared", "-c1", "-j1", f"-T{seconds}", *defines,
                 "-f", str(script), database_url],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        tps = 0.0
        for process in processes:
            output, errors = process.communicate()
            if process.returncode != 0:
                sys.exit(f"pgbench failed:\n{errors}")
            tps += float(re.search(r"tps = ([\d.]+)", output).group(1))
    return tps


def scenario_rows(database_url):
    """{name: [(partner, tenant, page)]} for the read scenarios."""
    typical = psql(database_url, """
        select partner_id, tenant_id from caller_lines
        where parent_id is null and deleted_at is null and partner_id <> md5('partner-1')::uuid
        group by partner_id, tenant_id having count(*) between 300 and 5000
        order by md5(partner_id::text) limit 100""").splitlines()
    hot_partner = psql(database_url, "select md5('partner-1')::uuid")
    hot_tenant = psql(database_url, "select md5('tenant-1')::uuid")
    hot_total = int(psql(database_url, f"""
        select count(*) from caller_lines where partner_id = '{hot_partner}'
        and tenant_id = '{hot_tenant}' and parent_id is null and deleted_at is null"""))
    last_page = max(1, math.ceil(hot_total / 15))
    return {
        "typical": [(*row.split("|"), 1) for row in typical],
        "hot": [(hot_partner, hot_tenant, 1)],
        "last": [(hot_partner, hot_tenant, last_page)],
        "last_page": last_page,
    }

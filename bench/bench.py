#!/usr/bin/env python3
"""The benchmark kit behind bench/run (see README). Standard library only.

load:  the service over loopback (wrk, rotating over partners with real tokens) against the
       ceiling, pgbench running the very statement the handler sends, at the same concurrency;
       the service runs twice: listing cache on (as in production: repeats are answered from
       memory) and off (every request runs the statement, like for like with pgbench). Prints
       one table and the service's peak RSS.
soak:  64 connections for 60 s on the same data; requests, errors, p50/p99, RSS start/end.
"""

import argparse
import json
import math
import os
import re
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


class Service:
    def __init__(self, database_url, pool_size, log_level, listing_cache):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = app_env(database_url, APP__SERVER__HOST="127.0.0.1", APP__SERVER__PORT=self.port,
                      APP__RATE_LIMIT__ENABLED="false", APP__LOG__LEVEL=log_level,
                      APP__DATABASE__MAX_CONNECTIONS=pool_size,
                      APP__LISTING_CACHE__ENABLED=str(listing_cache == "on").lower())
        # Logs are formatted and written as in production, to /dev/null.
        self.process = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        sys.exit("agent-api did not start")

    def memory_kib(self, field):
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def tokens_for(partners, database_url):
    return {p: run(BIN, "token", "issue", "--partner", p, "--ttl", "3h",
                   env=app_env(database_url)).strip() for p in sorted(set(partners))}


def wrk(port, targets, connections, seconds, accept_encoding=None):
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as file:
        for path, token in targets:
            file.write(f"{path}\t{token}\n")
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


def scenarios(database_url):
    """(name, [(partner, tenant, page)]) for the three scenarios of the brief."""
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
    return [
        ("typical partners, page 1", [(*row.split("|"), 1) for row in typical]),
        ("hot partner, page 1", [(hot_partner, hot_tenant, 1)]),
        (f"hot partner, last page ({last_page})", [(hot_partner, hot_tenant, last_page)]),
    ]


def cache_hits(port):
    """The service's listing-cache counters (from /metrics): {outcome: count}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        text = response.read().decode()
    return {outcome: float(count) for outcome, count in
            re.findall(r'^agent_api_listing_cache_total\{outcome="(\w+)"\} ([\d.]+)$', text, re.M)}


def measure_service(args, database_url, plan, tokens, listing_cache):
    """Each scenario against one service process; returns ([(name, measured, hit share)], peak RSS)."""
    service = Service(database_url, args.pool, args.log_level, listing_cache)
    results = []
    try:
        for name, rows in plan:
            targets = [(f"/agent-api/tenant/{t}/callerline?page={page}&per_page=15", tokens[p])
                       for p, t, page in rows]
            log(f"{name}, cache {listing_cache}: warm-up {args.warmup} s, "
                f"then {args.seconds} s at {args.connections} connections")
            wrk(service.port, targets, args.connections, args.warmup, args.accept_encoding)
            before = cache_hits(service.port)
            measured = wrk(service.port, targets, args.connections, args.seconds,
                           args.accept_encoding)
            after = cache_hits(service.port)
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            answered = sum(delta.values())
            results.append((name, measured, delta.get("hit", 0) / answered if answered else 0.0))
        return results, service.memory_kib("VmHWM")
    finally:
        service.stop()


def load(args, database_url):
    statement = list_statement()
    plan = scenarios(database_url)
    tokens = tokens_for([p for _, rows in plan for p, _, _ in rows], database_url)
    modes = [args.listing_cache] if args.listing_cache else ["on", "off"]
    runs = {mode: measure_service(args, database_url, plan, tokens, mode) for mode in modes}
    print()
    print(f"{'scenario':<30} {'cache':>5} {'hits':>5} {'service req/s':>13} {'pgbench tps':>11} "
          f"{'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'errors':>6}")
    for index, (name, rows) in enumerate(plan):
        log(f"{name}: pgbench {args.seconds} s at {args.connections} connections")
        tps = pgbench(database_url, statement, rows, args.connections, args.seconds)
        for mode in modes:
            _, measured, hits = runs[mode][0][index]
            print(f"{name:<30} {mode:>5} {hits:>5.0%} {measured['rps']:>13.0f} {tps:>11.0f} "
                  f"{measured['rps'] / tps:>6.2f} {measured['p50_ms']:>7.1f} "
                  f"{measured['p99_ms']:>7.1f} {measured['max_ms']:>7.1f} "
                  f"{measured['errors']:>6.0f}", flush=True)
    for mode in modes:
        print(f"service peak RSS, cache {mode}: {runs[mode][1] / 1024:.1f} MiB "
              "(VmHWM over all scenarios)")


def soak(args, database_url):
    plan = scenarios(database_url)
    rows = [row for _, scenario_rows in plan for row in scenario_rows]
    tokens = tokens_for([p for p, _, _ in rows], database_url)
    targets = [(f"/agent-api/tenant/{t}/callerline?page={page}&per_page=15", tokens[p])
               for p, t, page in rows]
    service = Service(database_url, args.pool, args.log_level, args.listing_cache or "on")
    samples = []
    try:
        # Warm up at full concurrency, so connection buffers and the pool are already there.
        wrk(service.port, targets, args.connections, 10, args.accept_encoding)
        rss_start = service.memory_kib("VmRSS")
        log(f"soak: {args.connections} connections for {args.seconds} s")
        sampler = threading.Thread(target=lambda: sample_rss(service, args.seconds, samples))
        sampler.start()
        measured = wrk(service.port, targets, args.connections, args.seconds,
                       args.accept_encoding)
        sampler.join()
        rss_end = service.memory_kib("VmRSS")
    finally:
        service.stop()
    print(f"\nsoak: {args.connections} connections, {measured['seconds']:.0f} s, "
          f"{len(targets)} targets (typical partners, hot partner first and last pages)")
    print(f"requests served  {measured['requests']:.0f} ({measured['rps']:.0f}/s)")
    print(f"errors           {measured['errors']:.0f}")
    print(f"latency p50/p99  {measured['p50_ms']:.1f} / {measured['p99_ms']:.1f} ms "
          f"(max {measured['max_ms']:.1f})")
    print(f"RSS start/end    {rss_start / 1024:.1f} / {rss_end / 1024:.1f} MiB")
    print("RSS every 10 s   " + " ".join(f"{kib / 1024:.1f}" for kib in samples) + " MiB")


def sample_rss(service, seconds, samples):
    for _ in range(seconds // 10):
        time.sleep(10)
        samples.append(service.memory_kib("VmRSS"))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["load", "soak"])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--pool", type=int, default=10, help="the service's pool size")
    parser.add_argument("--log-level", default="info",
                        help="the service's log level (info, the default, logs every request)")
    parser.add_argument("--listing-cache", choices=["on", "off"],
                        help="load: run only with the service's page cache on (as in production) "
                             "or off (every request reads the database); default: both. "
                             "soak: on unless off")
    parser.add_argument("--accept-encoding", choices=["gzip", "br"],
                        help="send Accept-Encoding, as most HTTP clients do (default: none)")
    parser.add_argument("--reload", action="store_true", help="regenerate the data set")
    args = parser.parse_args()
    args.connections = args.connections or (32 if args.mode == "load" else 64)
    args.seconds = args.seconds or (15 if args.mode == "load" else 60)
    database_url = prepare_database(os.environ["DATABASE_URL"], args.lines, args.reload)
    (load if args.mode == "load" else soak)(args, database_url)


if __name__ == "__main__":
    main()

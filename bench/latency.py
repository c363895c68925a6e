"""Open-loop latency: requests arrive at a fixed rate whatever the service does, as partners'
systems send them, and each one's latency is measured from when it was due to be sent (oha
`-q` with `--latency-correction`), so a stall counts against every request it held up, not
only the few a closed loop (wrk) happened to have in flight.

On a Postgres cluster of its own (it restarts it) loaded like bench/run load's, with a writer
committing 100 writes/s throughout: the closed-loop rate of the typical load (wrk, cache on and
off), then open loops at 50% and 80% of it; then at 50% of the cached rate across a feed cut
(the instance's LISTEN session through a proxy that swallows it for 5 s), a rolling restart of
one of two instances behind HAProxy (SIGTERM, then started again), and a fast restart of the
primary. One oha process per partner (oha sends one set of headers), each partner's pages from
a file. Printed per scenario: p50, p99, p99.9 and max, errors, and requests sent late (more than
a millisecond after they were due) or never sent.
"""

import json
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from kit import (BIN, ROOT, Proxy, Service, app_env, free_port, log, own_directory, port_of,
                 postgres_program, psql, run, scenario_rows, through, token, url_with_database,
                 wrk)
from kit import targets as wrk_targets
from scale import Balancer
from writer import Writer

PARTNERS = 10
# Connections per oha process: enough that a stall of a few hundred milliseconds at the rates
# measured here does not make requests wait for a connection (they would then be sent late).
CONNECTIONS = 32
WRITES_PER_SECOND = 100
# When, in the run, a disruption starts, and how long a feed cut lasts.
DISRUPT_AT = 1 / 3
CUT_SECONDS = 5


class Cluster:
    """A Postgres cluster of the bench's own on a free port, so it may be restarted."""

    def __init__(self):
        self.directory = own_directory("agent-api-bench-latency-")
        self.port = free_port()
        run(*postgres_program("initdb"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "-D", str(self.directory))
        self.pg_ctl = [*postgres_program("pg_ctl"), "-D", str(self.directory), "-w"]
        run(*self.pg_ctl, "-l", str(self.directory / "server.log"), "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=512MB", "start")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def restart(self):
        run(*self.pg_ctl, "-m", "fast", "restart")

    def stop(self):
        subprocess.run([*self.pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        subprocess.run(["rm", "-rf", str(self.directory)])


def partner_targets(rows):
    """[(token, [paths])] for the first PARTNERS partners of the typical rows."""
    pages = defaultdict(list)
    for partner, tenant, page in rows:
        pages[partner].append(f"/agent-api/tenant/{tenant}/callerline?page={page}&per_page=15")
    issued = int(time.time()) - 60
    return [(token(partner, issued), paths) for partner, paths in list(pages.items())[:PARTNERS]]


def open_loop(port, targets, rate, seconds):
    """`rate` requests a second for `seconds`, split over one oha process per partner."""
    with tempfile.TemporaryDirectory() as directory:
        processes = []
        for n, (bearer, paths) in enumerate(targets):
            urls = Path(directory) / f"urls-{n}.txt"
            urls.write_text("".join(f"http://127.0.0.1:{port}{path}\n" for path in paths))
            processes.append((Path(directory) / f"{n}.db", Path(directory) / f"{n}.json",
                              subprocess.Popen(
                ["oha", "--no-tui", "-z", f"{seconds}s", "-q", f"{rate / len(targets):.2f}",
                 "--latency-correction", "-c", str(CONNECTIONS), "-t", "10s",
                 "--urls-from-file", str(urls), "-H", f"Authorization: Bearer {bearer}",
                 "--db-url", str(Path(directory) / f"{n}.db"),
                 "--output-format", "json", "-o", str(Path(directory) / f"{n}.json")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
        latencies, late, refused, answered, cut_off, failed = [], 0, 0, 0, 0, 0
        for database, summary, process in processes:
            _, stderr = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"oha failed: {stderr}")
            for kind, count in json.loads(summary.read_text()).get("errorDistribution",
                                                                    {}).items():
                # Requests still in flight when the run ends are cut off: not an error.
                if "deadline" in kind:
                    cut_off += count
                else:
                    failed += count
            with sqlite3.connect(database) as db:
                for start, due, end, status in db.execute(
                        "select start, start_latency_correction, end, status from oha"):
                    due = start if due is None else due
                    latencies.append(end - due)
                    late += start - due > 0.001
                    refused += status != 200
                    answered += 1
    latencies.sort()
    at = lambda share: latencies[min(len(latencies) - 1, int(len(latencies) * share))] * 1000
    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": latencies[-1] * 1000,
            "errors": refused + failed, "late": late,
            "unsent": max(0, int(rate * seconds) - answered - failed - cut_off)}


def after(delay, *actions):
    """Runs `actions` one after the other, starting `delay` seconds from now."""
    def run_all():
        time.sleep(delay)
        for action in actions:
            action()
    thread = threading.Thread(target=run_all, daemon=True)
    thread.start()
    return thread


def latency(args, _admin_url):
    cluster = Cluster()
    try:
        url = load(cluster, args.lines)
        rows = scenario_rows(url)["typical"]
        targets = partner_targets(rows)
        table = []
        rates = {}
        for mode in ("on", "off"):
            writer = Writer(url, rows, WRITES_PER_SECOND)
            writer.start()
            service = Service(url, args.pool, args.log_level, mode)
            try:
                log(f"cache {mode}: the closed-loop rate (wrk, {args.connections} connections)")
                wrk(service.port, wrk_targets(rows), args.connections, args.warmup)
                rates[mode] = wrk(service.port, wrk_targets(rows), args.connections,
                                  args.seconds)["rps"]
                for share in (0.5, 0.8):
                    rate = rates[mode] * share
                    log(f"cache {mode}: {rate:.0f} req/s open loop for {args.seconds} s")
                    table.append((f"typical + 100 writes/s, {share:.0%}", mode, rate,
                                  open_loop(service.port, targets, rate, args.seconds)))
            finally:
                service.stop()
                writer.stop()
        rate = rates["on"] * 0.5
        for name, scenario in (("a feed cut of 5 s", feed_cut),
                               ("an instance restart (HAProxy)", instance_restart),
                               ("a primary restart", lambda *a: primary_restart(cluster, *a))):
            log(f"{name}: {rate:.0f} req/s open loop for {args.seconds} s")
            writer = Writer(url, rows, WRITES_PER_SECOND)
            writer.start()
            try:
                table.append((f"50%, across {name}", "on", rate,
                              scenario(args, url, targets, rate)))
            finally:
                writer.stop()
    finally:
        cluster.stop()
    print(f"\nclosed-loop rate (wrk, {args.connections} connections, 100 writes/s): "
          f"cache on {rates['on']:.0f} req/s, off {rates['off']:.0f} req/s; "
          f"open loop over {len(targets)} partners")
    print(f"{'scenario':<40} {'cache':>5} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'p99.9 ms':>8} {'max ms':>7} {'errors':>6} {'late':>6} {'unsent':>6}")
    for name, mode, rate, r in table:
        print(f"{name:<40} {mode:>5} {rate:>7.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
              f"{r['p999']:>8.2f} {r['max']:>7.1f} {r['errors']:>6} {r['late']:>6} "
              f"{r['unsent']:>6}")


def load(cluster, lines):
    name = "agent_api_bench_latency"
    psql(cluster.url, f'create database "{name}"')
    url = url_with_database(cluster.url, name)
    run(BIN, "migrate", env=app_env(url))
    log(f"loading {lines:,} caller lines into the bench's own cluster")
    run("psql", "-qX", url, "-v", f"lines={lines}", "-v", "tenants=10", "-v", "partners=500",
        "-f", ROOT / "bench" / "generate.sql")
    return url


def feed_cut(args, url, targets, rate):
    proxy = Proxy(port_of(url))
    service = Service(url, args.pool, args.log_level, "on",
                      DATABASE_FEED_URL=through(url, proxy.port))
    try:
        after(args.seconds * DISRUPT_AT, proxy.cut, lambda: time.sleep(CUT_SECONDS), proxy.heal)
        return open_loop(service.port, targets, rate, args.seconds)
    finally:
        service.stop()


def instance_restart(args, url, targets, rate):
    services = [Service(url, args.pool, args.log_level, "on") for _ in range(2)]
    balancer = Balancer([service.port for service in services])

    def restart_first():
        port = services[0].port
        services[0].stop()
        services[0] = Service(url, args.pool, args.log_level, "on", port=port)

    try:
        after(args.seconds * DISRUPT_AT, restart_first)
        return open_loop(balancer.port, targets, rate, args.seconds)
    finally:
        balancer.stop()
        for service in services:
            service.stop()


def primary_restart(cluster, args, url, targets, rate):
    service = Service(url, args.pool, args.log_level, "on")
    try:
        after(args.seconds * DISRUPT_AT, cluster.restart)
        return open_loop(service.port, targets, rate, args.seconds)
    finally:
        service.stop()

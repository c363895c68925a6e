#!/usr/bin/env python3
"""The benchmark kit behind bench/run (see docs/development.md). Standard library only.

load:  the service over loopback (wrk, rotating over partners with real tokens) against the
       ceiling, pgbench running the very statement the handler sends, at the same concurrency.
       Scenarios: typical partners, a hot partner's first and last page, fresh tokens (each
       request of a partner carries another issue time), and the typical load while a writer
       changes random partners' lines at 1, 10 and 100 writes/s (pgbench then runs under the
       same writer, and a checker asks for each written page and compares it with the write).
       Each read scenario runs with the listing cache on (as in production) and off (every
       request runs the statement: like for like with pgbench). Prints one table (with the
       service's CPU per request) and peak RSS; `--binary` measures another build.
soak:  64 connections for 60 s on the same data; requests, errors, p50/p99, RSS start/end.
bulk:  what operators' bulk SQL costs with the project's triggers against the same statement
       with them disabled, on a fresh database.
hostile: what unauthenticated, hostile traffic costs the service, one figure per attack
       (`--binary` to measure another build, an older release say).
scale: one instance, one behind HAProxy, two behind it, and two reading misses from a hot
       standby, cache on and off, on the same data.
herd:  what a cold instance costs the database: 64 requests at once for one cold page, and
       a restart under 500 partners' load (`--binary` to compare another build).
pooler: the typical load direct and through PgBouncer in transaction mode, cache on and off.
upgrade: a 0700-era database of 2,000,000 lines migrated by today's binary while an instance
       of that era serves: each migration's time, read stalls per table, errors and p99.
chaos: the chaos check (tests/chaos) on the release build for `--seconds` (600) with `--seed`:
       every answer judged against the history; a table by fault, non-zero on any violation.
       `--instance-staleness-ms` mis-sets the instances' bound (the checker keeps 2,000 ms).
rtt:   round trips per miss: a delay proxy before the primary, a standby and PgBouncer in turn
       (`--delay-ms`, 5 each way), sequential requests timed with and without it.
latency: open-loop load (oha, a fixed arrival rate, latency from each request's intended send
       time) at 50% and 80% of the closed-loop rate, cached and not, with 100 writes/s; and at
       50% across a feed cut, an instance restart behind HAProxy and a primary restart.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from kit import (BIN, ROOT, Service, app_env, list_statement, log, pgbench, prepare_database, psql,
                 run, scenario_rows, targets, url_with_database, wrk)
from herd import herd
from latency import latency
from upgrade import upgrade
from hostile import hostile
from pooler import pooler
from rtt import rtt
from scale import scale
from writer import Writer


@dataclass
class Scenario:
    name: str
    rows: list
    issue_times: int = 1
    writes: int = 0
    customers: bool = False
    modes: tuple = ("on", "off")


def plan(rows):
    typical = rows["typical"]
    return [
        Scenario("typical partners, page 1", typical),
        Scenario("hot partner, page 1", rows["hot"]),
        Scenario(f"hot partner, last page ({rows['last_page']})", rows["last"]),
        Scenario("typical, fresh token per call", typical, issue_times=200),
        Scenario("typical + 1 write/s", typical, writes=1, modes=("on",)),
        Scenario("typical + 10 writes/s, customers too", typical, writes=10, customers=True,
                 modes=("on",)),
        Scenario("typical + 100 writes/s", typical, writes=100, modes=("on",)),
    ]


def measure(args, database_url, scenarios, mode):
    """Each scenario against one service process: {name: (wrk figures, hit share, writer)}."""
    service = Service(database_url, args.pool, args.log_level, mode, binary=args.binary or BIN)
    results = {}
    try:
        for scenario in scenarios:
            if mode not in scenario.modes:
                continue
            target_list = targets(scenario.rows, scenario.issue_times)
            writer = None
            if scenario.writes:
                writer = Writer(database_url, scenario.rows, scenario.writes, scenario.customers)
                writer.start()
            log(f"{scenario.name}, cache {mode}: warm-up {args.warmup} s, "
                f"then {args.seconds} s at {args.connections} connections")
            wrk(service.port, target_list, args.connections, args.warmup, args.accept_encoding)
            if writer:
                writer.stop()
                writer = Writer(database_url, scenario.rows, scenario.writes, scenario.customers,
                                check_port=service.port)
                writer.start()
            before, cpu_before = service.cache_outcomes(), service.cpu_seconds()
            measured = wrk(service.port, target_list, args.connections, args.seconds,
                           args.accept_encoding)
            after = service.cache_outcomes()
            measured["cpu_us"] = (1e6 * (service.cpu_seconds() - cpu_before)
                                  / max(measured["requests"], 1))
            if writer:
                writer.stop()
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            answered = sum(delta.values())
            hits = delta.get("hit", 0) / answered if answered else 0.0
            results[scenario.name] = (measured, hits,
                                      writer.report(args.seconds) if writer else None)
        return results, service.memory_kib("VmHWM")
    finally:
        service.stop()


def ceiling(args, database_url, scenario, statement, cache):
    """pgbench tps for the scenario's rows, under the scenario's writer; the same statement
    and rows give the same ceiling, so it is measured once."""
    key = (tuple(scenario.rows), scenario.writes, scenario.customers)
    if key not in cache:
        log(f"{scenario.name}: pgbench {args.seconds} s at {args.connections} connections")
        writer = None
        if scenario.writes:
            writer = Writer(database_url, scenario.rows, scenario.writes, scenario.customers)
            writer.start()
        cache[key] = pgbench(database_url, statement, scenario.rows, args.connections,
                             args.seconds)
        if writer:
            writer.stop()
    return cache[key]


def load(args, database_url):
    statement = list_statement()
    scenarios = plan(scenario_rows(database_url))
    modes = [args.listing_cache] if args.listing_cache else ["on", "off"]
    runs = {mode: measure(args, database_url, scenarios, mode) for mode in modes}
    print()
    print(f"{'scenario':<38} {'cache':>5} {'hits':>5} {'req/s':>7} {'pgbench':>7} "
          f"{'ratio':>6} {'cpu µs':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'errors':>6} {'stale':>9}")
    ceilings = {}
    for scenario in scenarios:
        tps = ceiling(args, database_url, scenario, statement, ceilings)
        for mode in modes:
            if scenario.name not in runs[mode][0]:
                continue
            measured, hits, written = runs[mode][0][scenario.name]
            stale = f"{written['stale']}/{written['checked']}" if written else ""
            print(f"{scenario.name:<38} {mode:>5} {hits:>5.0%} {measured['rps']:>7.0f} "
                  f"{tps:>7.0f} {measured['rps'] / tps:>6.2f} {measured['cpu_us']:>6.0f} "
                  f"{measured['p50_ms']:>7.1f} "
                  f"{measured['p99_ms']:>7.1f} {measured['max_ms']:>7.1f} "
                  f"{measured['errors']:>6.0f} {stale:>9}", flush=True)
    for mode in modes:
        print(f"service peak RSS, cache {mode}: {runs[mode][1] / 1024:.1f} MiB "
              "(VmHWM over all scenarios)")
    for mode in modes:
        for name, (_, _, written) in runs[mode][0].items():
            if written:
                print(f"writer, {name}: {written['writes_per_s']:.0f} writes/s; the first "
                      f"answer after a commit was older in {written['first_answer_old']} of "
                      f"{written['checked']}; settled within p99 {written['settle_p99_ms']:.1f} "
                      f"ms, max {written['settle_max_ms']:.1f} ms; stale past 1 s: "
                      f"{written['stale']}")


def soak(args, database_url):
    rows = scenario_rows(database_url)
    target_list = targets(rows["typical"] + rows["hot"] + rows["last"])
    service = Service(database_url, args.pool, args.log_level, args.listing_cache or "on")
    samples = []
    try:
        # Warm up at full concurrency, so connection buffers and the pool are already there.
        wrk(service.port, target_list, args.connections, 10, args.accept_encoding)
        rss_start = service.memory_kib("VmRSS")
        log(f"soak: {args.connections} connections for {args.seconds} s")
        sampler = threading.Thread(target=lambda: sample_rss(service, args.seconds, samples))
        sampler.start()
        measured = wrk(service.port, target_list, args.connections, args.seconds,
                       args.accept_encoding)
        sampler.join()
        rss_end = service.memory_kib("VmRSS")
    finally:
        service.stop()
    print(f"\nsoak: {args.connections} connections, {measured['seconds']:.0f} s, "
          f"{len(target_list)} targets (typical partners, hot partner first and last pages)")
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


BULK_STATEMENTS = [
    ("insert 1,000,000 lines (one statement)",
     "insert into caller_lines (id, tenant_id, partner_id, user_id, name, caller_number, "
     "call_line) select gen_random_uuid(), md5('t' || n % 4)::uuid, md5('p' || n % 50)::uuid, "
     "case when n % 3 = 0 then md5('c' || n % 50)::uuid end, 'l' || n, 'c', 1 "
     "from generate_series(1, 1000000) n"),
    ("soft-delete 100,000 lines",
     "update caller_lines set deleted_at = now() where id in "
     "(select id from caller_lines where deleted_at is null order by id limit 100000)"),
    ("move 100,000 lines to another partner",
     "update caller_lines set partner_id = md5('p' || (abs(hashtext(id::text)) % 50))::uuid, "
     "user_id = null where id in (select id from caller_lines where deleted_at is null "
     "order by id desc limit 100000)"),
]


def bulk(args, admin_url):
    print(f"\n{'statement':<40} {'triggers':>9} {'disabled':>9} {'ratio':>6}")
    for name, statement in BULK_STATEMENTS:
        seconds = {}
        for triggers in ("on", "off"):
            database = f"agent_api_bench_bulk_{triggers}"
            url = url_with_database(admin_url, database)
            psql(admin_url, f'drop database if exists "{database}"')
            psql(admin_url, f'create database "{database}"')
            run(BIN, "migrate", env=app_env(url))
            setup = ["insert into tenants (id, name) select md5('t' || n)::uuid, 't' "
                     "from generate_series(0, 3) n",
                     "insert into users (id, type, name) select md5('p' || n)::uuid, "
                     "'partner', 'p' from generate_series(0, 49) n",
                     "insert into users (id, type, partner_id, name) select md5('c' || n)::uuid, "
                     "'customer', md5('p' || n)::uuid, 'c' from generate_series(0, 49) n"]
            earlier = [s for _, s in BULK_STATEMENTS[:BULK_STATEMENTS.index((name, statement))]]
            for sql in setup + earlier:
                psql(url, sql)
            psql(url, "vacuum analyze")
            switch = "alter table caller_lines disable trigger user; " if triggers == "off" else ""
            log(f"{name}, triggers {triggers}")
            started = time.monotonic()
            psql(url, f"{switch}{statement}")
            seconds[triggers] = time.monotonic() - started
            psql(admin_url, f'drop database "{database}"')
        print(f"{name:<40} {seconds['on']:>8.2f}s {seconds['off']:>8.2f}s "
              f"{seconds['on'] / seconds['off']:>6.2f}", flush=True)


def chaos(args):
    """The chaos test binary, built for release, as long and with the seed asked for."""
    env = dict(os.environ, CHAOS_SECONDS=str(args.seconds), CHAOS_SEED=str(args.seed))
    if args.instance_staleness_ms:
        env["CHAOS_INSTANCE_STALENESS_MS"] = str(args.instance_staleness_ms)
    log(f"chaos: {args.seconds} s, seed {args.seed}")
    result = subprocess.run(["cargo", "test", "--release", "--quiet", "--test", "chaos", "--",
                             "--exact", "under_combined_faults_every_answer_keeps_the_promises",
                             "--nocapture"], env=env, cwd=ROOT)
    return result.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["load", "soak", "bulk", "hostile", "scale", "herd",
                                         "pooler", "upgrade", "chaos", "latency", "rtt"])
    parser.add_argument("--lines", type=int)
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
    parser.add_argument("--binary", help="load, hostile, herd: another agent-api binary to measure")
    parser.add_argument("--seed", type=int, default=29, help="chaos: the schedule's seed")
    parser.add_argument("--delay-ms", type=int, default=5,
                        help="rtt: how long the proxy holds each chunk, each way")
    parser.add_argument("--instance-staleness-ms", type=int,
                        help="chaos: the instances' staleness bound (default: the checker's)")
    args = parser.parse_args()
    args.connections = args.connections or (64 if args.mode == "soak" else 32)
    args.seconds = args.seconds or {"soak": 60, "chaos": 600}.get(args.mode, 15)
    if args.mode == "chaos":
        return chaos(args)
    args.lines = args.lines or (2_000_000 if args.mode in ("herd", "upgrade") else 1_000_000)
    if args.mode in ("bulk", "hostile", "upgrade", "latency"):
        {"bulk": bulk, "hostile": hostile, "upgrade": upgrade, "latency": latency}[args.mode](
            args, os.environ["DATABASE_URL"])
        return
    database_url = prepare_database(os.environ["DATABASE_URL"], args.lines, args.reload)
    {"load": load, "soak": soak, "scale": scale, "herd": herd, "pooler": pooler,
     "rtt": rtt}[args.mode](args, database_url)


if __name__ == "__main__":
    sys.exit(main())

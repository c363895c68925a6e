"""Herds of misses: what a cold instance costs the database (issue: the cache wing).

- one cold page: 64 connections ask for the hot partner's page 1 at once, each with a token of
  its own issue time, on a fresh instance; the list and standing statements it ran since it
  started, per distinct key (one page, one partner's standing);
- a restart under the typical load: a fresh instance, then at once 64 connections rotating
  over 500 partners' page 1 for one second; every statement it ran since it started against
  the distinct pages asked, with that second's p99 and errors.

Each for this build and, with `--binary PATH`, another (an earlier release, say), on the same
data (2,000,000 lines by default)."""

import threading
import time
from pathlib import Path
import urllib.request

from kit import BIN, Service, log, psql, targets, token, wrk

STATEMENTS = ("list_caller_lines", "partner_standing", "default_tenant_id",
              "all_partner_standings")


def herd(args, database_url):
    hot_partner = psql(database_url, "select md5('partner-1')::uuid")
    hot_tenant = psql(database_url, "select md5('tenant-1')::uuid")
    # Each of 500 partners' page 1 on its largest pair.
    typical = [tuple(row.split("|")) + (1,) for row in psql(database_url, """
        select distinct on (partner_id) partner_id, tenant_id from caller_lines
        where parent_id is null and deleted_at is null
        group by partner_id, tenant_id order by partner_id, count(*) desc
        limit 500""").splitlines()]
    builds = [("this build", BIN)] + ([(release_name(args.binary), args.binary)]
                                      if args.binary else [])
    results = []
    for name, binary in builds:
        cold = one_cold_page(args, database_url, binary, hot_partner, hot_tenant)
        restart = restarted_under_load(args, database_url, binary, typical)
        results.append((name, cold, restart))
    print(f"\n{'build':<28} {'scenario':<26} {'keys':>5} {'list':>6} {'standing':>9} "
          f"{'other':>6} {'per key':>8} {'p99 ms':>7} {'errors':>6}")
    for name, cold, restart in results:
        # One cold page: list and standing statements per key; a restart: every statement per
        # page asked.
        for scenario, (keys, ran, figures), counted in (
                ("one cold page, 64 at once", cold, ("list", "standing")),
                ("restart, first second", restart, ("list", "standing", "other"))):
            kinds = {"list": ran.get("list_caller_lines", 0),
                     "standing": ran.get("partner_standing", 0)
                     + ran.get("all_partner_standings", 0)}
            kinds["other"] = sum(ran.values()) - kinds["list"] - kinds["standing"]
            per_key = sum(kinds[kind] for kind in counted) / keys
            p99 = f"{figures['p99_ms']:.1f}" if "p99_ms" in figures else "-"
            print(f"{name[-28:]:<28} {scenario:<26} {keys:>5} {kinds['list']:>6.0f} "
                  f"{kinds['standing']:>9.0f} {kinds['other']:>6.0f} {per_key:>8.2f} {p99:>7} "
                  f"{figures['errors']:>6.0f}")


def release_name(binary):
    """The other build's name: the commit in `agent-api.commit` beside it, else its path."""
    stamp = Path(binary).with_name("agent-api.commit")
    return stamp.read_text().strip()[:12] if stamp.exists() else binary


def ran(service):
    """The statements a fresh instance ran since it started."""
    return {name: count for name, count in service.statements().items() if name in STATEMENTS}


def one_cold_page(args, database_url, binary, partner, tenant):
    log(f"{binary}: 64 requests at once for one cold page")
    service = Service(database_url, args.pool, args.log_level, "on", binary=binary)
    try:
        path = f"/agent-api/tenant/{tenant}/callerline?page=1&per_page=15"
        now = int(time.time())
        start = threading.Barrier(64)
        failures = []

        def ask(n):
            request = urllib.request.Request(f"http://127.0.0.1:{service.port}{path}", headers={
                "Authorization": f"Bearer {token(partner, now - 60 - n)}"})
            start.wait()
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status != 200:
                    failures.append(response.status)

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Two distinct keys: one page, one partner's standing.
        return 2, ran(service), {"errors": len(failures)}
    finally:
        service.stop()


def restarted_under_load(args, database_url, binary, rows):
    log(f"{binary}: a fresh instance, at once under 500 partners' load for one second")
    service = Service(database_url, args.pool, args.log_level, "on", binary=binary)
    try:
        figures = wrk(service.port, targets(rows), 64, 1)
        # wrk rotates over the targets: in a second every one was asked once it sent 500.
        keys = min(len(rows), int(figures["requests"]))
        return keys, ran(service), figures
    finally:
        service.stop()

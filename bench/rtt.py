"""Round trips per miss: what a partner waits for when the database is not next door. A proxy
that holds every chunk `--delay-ms` each way (a round trip of twice that) sits in turn before
the primary, a hot standby and PgBouncer (transaction mode); sequential requests are timed with
the delay and without it, and the difference divided by the round trip is how many round trips
a request waited for.

Per path, three kinds of request: a page with the listing cache off (the list statement; the
partner's standing and the default tenant still kept), the same page while memory is bypassed
(the feed unreachable: the standing is read too), and the legacy route then (the default tenant
as well)."""

import statistics
import time
import urllib.error
import urllib.request

from kit import Proxy, Service, free_port, log, port_of, scenario_rows, through, token
from pooler import PgBouncer
from scale import Standby

REQUESTS = 15


def median_ms(service_port, paths):
    """The median of REQUESTS sequential requests over `paths` (each a path and its token),
    after one of each to warm the connections up."""
    def ask(path, bearer):
        request = urllib.request.Request(f"http://127.0.0.1:{service_port}{path}",
                                         headers={"Authorization": f"Bearer {bearer}"})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        if status != 200:
            raise SystemExit(f"{path} answered {status}")
        return (time.perf_counter() - started) * 1000
    for path, bearer in paths:
        ask(path, bearer)
    return statistics.median(ask(*paths[n % len(paths)]) for n in range(REQUESTS))


def rtt(args, database_url):
    rows = scenario_rows(database_url)["typical"][:REQUESTS]
    issued = int(time.time()) - 60
    pages = [(f"/agent-api/tenant/{tenant}/callerline?page=1&per_page=15",
              token(partner, issued)) for partner, tenant, _ in rows]
    legacy = [("/agent-api/callerline?page=1&per_page=15", bearer) for _, bearer in pages]
    delay = args.delay_ms / 1000
    standby = Standby(database_url)
    bouncer = PgBouncer(database_url)
    unreachable = f"postgres://postgres@127.0.0.1:{free_port()}/postgres"
    paths = [
        # (path, the URL the proxy goes before, how the service uses it)
        ("direct", database_url, lambda url: {"database_url": url}),
        ("standby", standby.url,
         lambda url: {"database_url": database_url, "DATABASE_REPLICA_URLS": url}),
        ("PgBouncer (transaction)", bouncer.url,
         lambda url: {"database_url": url, "APP__DATABASE__POOL_MODE": "transaction",
                      "DATABASE_FEED_URL": database_url}),
    ]
    kinds = [("page, cache off", pages, {"listing_cache": "off"}),
             ("page, memory bypassed", pages, {"DATABASE_FEED_URL": unreachable}),
             ("legacy route, memory bypassed", legacy, {"DATABASE_FEED_URL": unreachable})]
    results = []
    try:
        for name, target, settings in paths:
            medians = {}
            for held in (0.0, delay):
                proxy = Proxy(port_of(target), held)
                for kind, requests, extra in kinds:
                    env = {**settings(through(target, proxy.port)), **extra}
                    url = env.pop("database_url")
                    cache = env.pop("listing_cache", "on")
                    log(f"{name}, {kind}, {held * 1000:.0f} ms each way")
                    service = Service(url, args.pool, args.log_level, cache,
                                      memory_bypassed="DATABASE_FEED_URL" in extra,
                                      APP__LEGACY__CALLERLINE="on", **env)
                    try:
                        medians[(kind, held)] = median_ms(service.port, requests)
                    finally:
                        service.stop()
            for kind, _, _ in kinds:
                waited = medians[(kind, delay)] - medians[(kind, 0.0)]
                results.append((name, kind, medians[(kind, 0.0)], medians[(kind, delay)],
                                waited / (2 * args.delay_ms)))
    finally:
        bouncer.stop()
        standby.stop()
    print(f"\nround trip {2 * args.delay_ms} ms ({args.delay_ms} ms each way); median of "
          f"{REQUESTS} sequential requests")
    print(f"{'path':<26} {'request':<31} {'no delay ms':>11} {'delayed ms':>10} "
          f"{'round trips':>11}")
    for name, kind, plain, delayed, trips in results:
        print(f"{name:<26} {kind:<31} {plain:>11.2f} {delayed:>10.2f} {trips:>11.2f}")

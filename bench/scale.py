"""Several instances on one machine: the typical load against one instance, the same behind
HAProxy (what the balancer costs), two instances behind it, and two instances reading cache
misses from a hot standby (pg_basebackup of the bench's own cluster), each with the listing
cache on and off, on the same data in one run."""

import os
import shutil
import subprocess
import time

from kit import (ROOT, Service, free_port, log, own_directory, postgres_program, psql, run,
                 scenario_rows, targets, wrk)


class Balancer:
    def __init__(self, instance_ports):
        self.port = free_port()
        env = dict(os.environ, AGENT_API_BIND=f"127.0.0.1:{self.port}",
                   AGENT_API_A=f"127.0.0.1:{instance_ports[0]}",
                   AGENT_API_B=f"127.0.0.1:{instance_ports[-1]}")
        self.process = subprocess.Popen(["haproxy", "-db", "-f", ROOT / "deploy" / "haproxy.cfg"],
                                        env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        time.sleep(1.5)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


class Standby:
    """A hot standby of the cluster behind `database_url`, in a directory of its own."""

    def __init__(self, database_url):
        self.directory = own_directory("agent-api-bench-standby-")
        self.port = free_port()
        host_port = database_url.split("@")[-1].split("/")[0]
        host, primary_port = host_port.split(":")
        self.pg_ctl = [*postgres_program("pg_ctl"), "-D", str(self.directory)]
        log("copying the bench's cluster into a standby (pg_basebackup)")
        run(*postgres_program("pg_basebackup"), "-h", host, "-p", primary_port,
            "-U", "postgres", "-X", "stream", "-R", "-c", "fast", "-D", str(self.directory))
        # A standby may not allow fewer connections than its primary.
        connections = psql(database_url, "show max_connections")
        run(*self.pg_ctl, "-w", "-l", str(self.directory / "standby.log"), "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={connections}", "start")
        self.url = database_url.replace(f":{primary_port}/", f":{self.port}/")

    def stop(self):
        subprocess.run([*self.pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def scale(args, database_url):
    rows = scenario_rows(database_url)["typical"]
    target_list = targets(rows)
    standby = Standby(database_url)
    setups = [
        ("one instance", 1, False, False),
        ("one instance behind HAProxy", 1, True, False),
        ("two instances behind HAProxy", 2, True, False),
        ("two instances + standby", 2, True, True),
    ]
    results = []
    try:
        for mode in ("on", "off"):
            for name, count, balanced, replica in setups:
                extra = {"DATABASE_REPLICA_URLS": standby.url} if replica else {}
                services = [Service(database_url, args.pool, args.log_level, mode, **extra)
                            for _ in range(count)]
                balancer = Balancer([s.port for s in services]) if balanced else None
                port = balancer.port if balancer else services[0].port
                try:
                    log(f"{name}, cache {mode}: warm-up {args.warmup} s, then {args.seconds} s")
                    wrk(port, target_list, args.connections, args.warmup)
                    measured = wrk(port, target_list, args.connections, args.seconds)
                    results.append((name, mode, measured))
                finally:
                    if balancer:
                        balancer.stop()
                    for service in services:
                        service.stop()
    finally:
        standby.stop()
    print(f"\n{'setup':<32} {'cache':>5} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'errors':>6}")
    for name, mode, measured in results:
        print(f"{name:<32} {mode:>5} {measured['rps']:>7.0f} {measured['p50_ms']:>7.1f} "
              f"{measured['p99_ms']:>7.1f} {measured['max_ms']:>7.1f} {measured['errors']:>6.0f}")

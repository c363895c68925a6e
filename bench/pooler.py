"""What PgBouncer in transaction mode costs: the typical load against an instance connected to
Postgres directly, and one connected through PgBouncer (deploy/pgbouncer.ini, with the bench's
addresses) with APP__DATABASE__POOL_MODE=transaction and the feed direct, each with the listing
cache on (production) and off (every request reads the database: the pooler's worst case)."""

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kit import ROOT, Service, free_port, log, scenario_rows, targets, wrk


class PgBouncer:
    """deploy/pgbouncer.ini in front of the bench's server, every database by its own name."""

    def __init__(self, database_url):
        self.directory = Path(tempfile.mkdtemp(prefix="agent-api-bench-pgbouncer-"))
        self.port = free_port()
        host, port = re.search(r"@([^:/]+):(\d+)/", database_url).groups()
        user = re.search(r"://([^:@]+)", database_url).group(1)
        (self.directory / "users.txt").write_text(f'"{user}" ""\n')
        site = {"listen_addr": "127.0.0.1", "listen_port": str(self.port), "auth_type": "trust",
                "auth_file": str(self.directory / "users.txt"),
                "logfile": str(self.directory / "pgbouncer.log"),
                "pidfile": str(self.directory / "pgbouncer.pid")}
        lines = []
        for line in (ROOT / "deploy" / "pgbouncer.ini").read_text().splitlines():
            key = line.split("=")[0].strip()
            if key == "agent_api":
                line = f"* = host={host} port={port}"
            elif key in site:
                line = f"{key} = {site[key]}"
            lines.append(line)
        (self.directory / "pgbouncer.ini").write_text("\n".join(lines) + "\nunix_socket_dir =\n")
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            for path in [self.directory, *self.directory.iterdir()]:
                shutil.chown(path, "postgres")
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.process = subprocess.Popen([*as_postgres, binary, str(self.directory / "pgbouncer.ini")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        time.sleep(1)
        self.url = re.sub(r"@[^/]+/", f"@127.0.0.1:{self.port}/", database_url)

    def stop(self):
        os.killpg(self.process.pid, 15)
        self.process.wait(timeout=30)
        shutil.rmtree(self.directory, ignore_errors=True)


def pooler(args, database_url):
    target_list = targets(scenario_rows(database_url)["typical"])
    bouncer = PgBouncer(database_url)
    setups = [
        ("direct", database_url, {}),
        ("through PgBouncer (transaction)", bouncer.url,
         {"APP__DATABASE__POOL_MODE": "transaction", "DATABASE_FEED_URL": database_url}),
    ]
    results = []
    try:
        for mode in ("on", "off"):
            for name, url, extra in setups:
                service = Service(url, args.pool, args.log_level, mode, **extra)
                try:
                    log(f"{name}, cache {mode}: warm-up {args.warmup} s, then {args.seconds} s")
                    wrk(service.port, target_list, args.connections, args.warmup)
                    results.append((name, mode, wrk(service.port, target_list, args.connections,
                                                    args.seconds)))
                finally:
                    service.stop()
    finally:
        bouncer.stop()
    print(f"\n{'setup':<34} {'cache':>5} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'errors':>6}")
    for name, mode, measured in results:
        print(f"{name:<34} {mode:>5} {measured['rps']:>7.0f} {measured['p50_ms']:>7.1f} "
              f"{measured['p99_ms']:>7.1f} {measured['max_ms']:>7.1f} {measured['errors']:>6.0f}")

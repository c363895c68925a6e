"""An upgrade as operators run it (issue: upgrades without downtime): a database at migration
0700 (its migration files applied as they were, by the release of that era) holding 2,000,000
lines, upgraded by today's `migrate` while an instance of that era serves the typical load.
Per migration: its time, the longest a plain read of each table waited meanwhile (pgbench,
20 reads a second a table, each logged), and the service's errors and p99 meanwhile.

The 0700-era release is built from git (the commit before migration 0800 was added) into
target/bench-releases, once."""

import json
import os
from datetime import datetime
import subprocess
import tempfile
import threading
import time
import http.client
from pathlib import Path

from kit import (BIN, ROOT, Service, app_env, log, psql, run, scenario_rows, targets,
                 url_with_database)

TABLES = ("tenants", "users", "caller_lines")


def era_binary():
    """The release of the 0700 era, built once."""
    added = run("git", "-C", ROOT, "log", "--diff-filter=A", "--format=%H", "--",
                "migrations/20261127000800_count_and_announce_per_statement.sql").split()[-1]
    commit = run("git", "-C", ROOT, "rev-parse", f"{added}^").strip()
    binary = ROOT / "target" / "bench-releases" / "release" / "agent-api"
    stamp = binary.with_name("agent-api.commit")
    if binary.exists() and stamp.exists() and stamp.read_text() == commit:
        return binary
    tree = Path(tempfile.gettempdir()) / f"agent-api-{commit[:7]}"
    if not tree.exists():
        run("git", "-C", ROOT, "worktree", "add", "-f", tree, commit)
    log(f"building the 0700-era release ({commit[:7]}) into target/bench-releases")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=tree, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=str(binary.parent.parent)))
    run("git", "-C", ROOT, "worktree", "remove", "--force", tree)
    stamp.write_text(commit)
    return binary


def era_database(admin_url, era, lines):
    """A fresh database migrated by the 0700-era release, loaded as a restore loads it."""
    name = "agent_api_upgrade_bench"
    url = url_with_database(admin_url, name)
    psql(admin_url, f'drop database if exists "{name}" with (force)')
    psql(admin_url, f'create database "{name}"')
    run(era, "migrate", env=app_env(url))
    log(f"loading {lines:,} caller lines at migration 0700 (triggers off, counts rebuilt)")
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as wrapper:
        wrapper.write(f"set session_replication_role = replica;\n"
                      f"\\i {ROOT / 'bench' / 'generate.sql'}\n"
                      f"set session_replication_role = origin;\n"
                      f"select rebuild_caller_line_counts();\n")
    run("psql", "-qX", url, "-v", f"lines={lines}", "-v", "tenants=10", "-v", "partners=500",
        "-f", wrapper.name)
    os.unlink(wrapper.name)
    log(f"loaded in {time.monotonic() - started:.0f} s")
    return url


class Load:
    """The typical load from threads with a connection each; every answer logged."""

    def __init__(self, port, target_list, threads=8):
        self.port, self.targets, self.answers = port, target_list, []
        self.running = True
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]
        for thread in self.threads:
            thread.start()

    def run(self, offset):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        n = offset
        while self.running:
            path, bearer = self.targets[n % len(self.targets)]
            n += len(self.threads)
            started = time.time()
            try:
                connection.request("GET", path, headers={"Authorization": f"Bearer {bearer}"})
                response = connection.getresponse()
                body = response.read()
                ok = response.status == 200 and b'"code":200,' in body
            except (OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                ok = False
            self.answers.append((started, time.time() - started, ok))

    def stop(self):
        self.running = False
        for thread in self.threads:
            thread.join()


def probes(database_url, seconds):
    """pgbench reading each table 20 times a second for `seconds`, each read logged."""
    directory = Path(tempfile.mkdtemp())
    processes = []
    for table in TABLES:
        script = directory / f"{table}.sql"
        script.write_text(f"select 1 from {table} limit 1;\n")
        processes.append(subprocess.Popen(
            ["pgbench", "-n", "-c1", "-j1", "-R", "20", f"-T{seconds}", "-l",
             f"--log-prefix={directory / ('log-' + table)}", "-f", str(script), database_url],
            cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return directory, processes


def probe_reads(directory, table):
    """(start, seconds) of each logged read of `table`."""
    reads = []
    for log_file in directory.glob(f"log-{table}.*"):
        for line in log_file.read_text().split("\n"):
            fields = line.split()
            if len(fields) >= 6:
                latency, epoch, micros = int(fields[2]), int(fields[4]), int(fields[5])
                end = epoch + micros / 1e6
                reads.append((end - latency / 1e6, latency / 1e6))
    return reads


def migrations_run(stderr):
    """[(version, description, start, end)] from migrate's JSON log lines."""
    started, windows = {}, []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event.get("fields", {})
        at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        if fields.get("message") == "applying migration":
            started[fields["version"]] = (fields["description"], at)
        elif fields.get("message") == "applied migration":
            description, start = started[fields["version"]]
            windows.append((fields["version"], description, start, at))
    return windows


def upgrade(args, admin_url):
    era = era_binary()
    database_url = era_database(admin_url, era, args.lines)
    service = Service(database_url, args.pool, args.log_level, "on", binary=era)
    rows = scenario_rows(database_url)["typical"]
    load = Load(service.port, targets(rows))
    directory, processes = probes(database_url, 600)
    time.sleep(3)
    log("migrating with today's binary while the 0700-era instance serves")
    migrated = subprocess.run([BIN, "migrate"], env=app_env(database_url, APP__LOG__FORMAT="json"),
                              capture_output=True, text=True)
    time.sleep(2)
    load.stop()
    for process in processes:
        process.terminate()
        process.wait()
    service.stop()
    if migrated.returncode != 0:
        raise SystemExit(f"migrate failed:\n{migrated.stderr}")
    windows = migrations_run(migrated.stderr)
    reads = {table: probe_reads(directory, table) for table in TABLES}
    lines = int(psql(database_url, "select count(*) from caller_lines"))
    print(f"\n{lines:,} lines; {len(load.answers):,} requests answered during the run\n")
    print("| migration | time s | longest read wait ms: tenants | users | caller_lines "
          "| requests | errors | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for version, description, start, end in windows:
        waits = []
        for table in TABLES:
            overlapping = [seconds for begun, seconds in reads[table]
                           if begun <= end and begun + seconds >= start]
            waits.append(f"{max(overlapping, default=0) * 1000:.0f}")
        answered = [a for a in load.answers if start <= a[0] <= end]
        errors = sum(1 for a in answered if not a[2])
        latencies = sorted(a[1] for a in answered)
        p99 = f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f}" if latencies else "-"
        print(f"| {version} {description} | {end - start:.2f} | {' | '.join(waits)} "
              f"| {len(answered)} | {errors} | {p99} |")
    errors = sum(1 for a in load.answers if not a[2])
    print(f"\nall run: {errors} errors of {len(load.answers):,} requests")

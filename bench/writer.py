"""A background writer, as operators and the rest of the platform write while partners read: each
write updates one random partner's line (on the first page the readers ask for) and, when asked,
one of that partner's customers. After each committed write the checker requests the affected
page from the service and compares it with what was written."""

import json
import random
import subprocess
import threading
import time
import urllib.request

from kit import psql, token

# A page that still does not show a committed write this long after it is a stale answer: the
# service must have heard of the write well before (it proves its feed every 0.5 s).
STALE_AFTER_SECONDS = 1.0


class Writer(threading.Thread):
    def __init__(self, database_url, rows, rate, customers=False, check_port=None):
        super().__init__(daemon=True)
        self.rate = rate
        self.customers = customers
        self.check_port = check_port
        self.stop_event = threading.Event()
        self.random = random.Random(7)
        # For each (partner, tenant) page: the ids of the lines on page 1.
        self.pages = []
        for partner, tenant, _ in rows:
            ids = psql(database_url, f"""
                select id from caller_lines where partner_id = '{partner}'
                and tenant_id = '{tenant}' and parent_id is null and deleted_at is null
                order by created_at, id limit 15""").splitlines()
            self.pages.append((partner, tenant, ids))
        self.database_url = database_url
        self.psql = self.session()
        self.writes = 0
        self.failed = 0
        self.first_answer_old = 0
        self.stale = 0
        self.settle_ms = []

    def session(self):
        return subprocess.Popen(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", self.database_url],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)

    def run(self):
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            partner, tenant, ids = self.random.choice(self.pages)
            line = self.random.choice(ids)
            value = self.random.randint(1, 1_000_000)
            statements = f"update caller_lines set call_line = {value} where id = '{line}';"
            if self.customers:
                # One of the partner's five customers: its name shows on the lines allocated to it.
                customer = f"(select id from users where partner_id = '{partner}' " \
                           f"order by id limit 1 offset {self.random.randrange(5)})"
                statements = f"begin; {statements} update users set phone = '{value}' " \
                             f"where id = {customer}; commit;"
            try:
                self.psql.stdin.write(f"{statements}\n\\echo committed\n")
                self.psql.stdin.flush()
                committed = self.psql.stdout.readline().strip() == "committed"
            except BrokenPipeError:
                committed = False
            if not committed:
                # The primary restarted (bench/run latency does that): a session anew.
                self.failed += 1
                self.psql.kill()
                self.psql.wait()
                time.sleep(0.2)
                self.psql = self.session()
                next_at = time.monotonic()
                continue
            self.writes += 1
            if self.check_port:
                self.check(partner, tenant, line, value)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def check(self, partner, tenant, line, value):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.check_port}/agent-api/tenant/{tenant}/callerline"
            "?page=1&per_page=15",
            headers={"Authorization": f"Bearer {token(partner, int(time.time()) - 60)}"})
        started = time.monotonic()
        first = True
        while True:
            with urllib.request.urlopen(request) as response:
                page = json.load(response)
            shown = {item["id"]: item["call_line"] for item in page["data"]}
            if shown.get(line) == value:
                self.settle_ms.append((time.monotonic() - started) * 1000)
                return
            self.first_answer_old += first
            first = False
            if time.monotonic() - started > STALE_AFTER_SECONDS:
                self.stale += 1
                return
            time.sleep(0.002)

    def stop(self):
        self.stop_event.set()
        self.join(timeout=30)
        self.psql.stdin.close()
        self.psql.wait(timeout=30)

    def report(self, seconds):
        settle = sorted(self.settle_ms) or [0.0]
        return {"writes_per_s": self.writes / seconds, "first_answer_old": self.first_answer_old,
                "stale": self.stale, "checked": len(self.settle_ms) + self.stale,
                "settle_p99_ms": settle[int(len(settle) * 0.99) - (len(settle) >= 100)],
                "settle_max_ms": settle[-1]}

#!/usr/bin/env python3
"""The crash test's load and its killer (run by bench/crash.sh, which prepares the database).

Starts allot, sets up a customer with seats and a domain, then runs write load from several
threads -- child nodes, allocations, mailboxes, aliases -- recording every write answered 2xx with
its id. Meanwhile it kills the server with SIGKILL at random moments, N times, restarting it each
time. At the end it reads every acknowledged write back through the API and runs `allot verify`.
Standard library only; talks to 127.0.0.1 only.
"""

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--log", required=True)
    p.add_argument("--min-gap", type=float, default=0.5, help="least seconds of load before a kill")
    p.add_argument("--max-gap", type=float, default=3.0, help="most seconds of load before a kill")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--plant-missing",
        action="store_true",
        help="count one write as acknowledged that never happened: the run must FAIL (tests the checker)",
    )
    args = p.parse_args()
    rng = random.Random(args.seed)
    crash = Crash(args)
    started = time.monotonic()
    crash.start()
    crash.setup()
    workers = [threading.Thread(target=crash.load, args=(i,), daemon=True) for i in range(args.threads)]
    for w in workers:
        w.start()
    for k in range(args.kills):
        time.sleep(rng.uniform(args.min_gap, args.max_gap))
        crash.kill()
        crash.start()
        print(f"kill {k + 1}/{args.kills}: acknowledged so far {crash.acknowledged()}", file=sys.stderr)
    # Some load after the last restart too, then stop it.
    time.sleep(args.min_gap)
    crash.stopping.set()
    for w in workers:
        w.join()
    load_seconds = time.monotonic() - started
    if args.plant_missing:
        crash.written.append(("mailbox", "0190f7b4-8d2a-7cc1-9f3a-3c1f5e2b9a10", "planted@crash.example"))
    missing = crash.check_present()
    crash.stop()
    verify = subprocess.run([args.bin, "verify"], capture_output=True, text=True)
    counts = crash.counts()
    print(f"kills: {args.kills}")
    print(f"load: {args.threads} threads, {load_seconds:.1f} s")
    print(f"acknowledged writes: {sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    print(f"unanswered writes (connection lost or refused): {crash.unanswered}")
    print(f"refused writes (4xx, expected: a kill between a write and its dependant): {crash.refused}")
    print(f"server errors (5xx): {crash.server_errors}")
    print(f"missing after restarts: {len(missing)}")
    for m in missing[:20]:
        print(f"  missing: {m}")
    print(f"allot verify: exit {verify.returncode}: {verify.stdout.strip()} {verify.stderr.strip()}")
    ok = not missing and verify.returncode == 0 and crash.server_errors == 0
    print("result: " + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


class Crash:
    def __init__(self, args):
        self.args = args
        self.server = None
        self.lock = threading.Lock()
        self.written = []  # (kind, id, extra)
        self.unanswered = 0
        self.refused = 0
        self.server_errors = 0
        self.stopping = threading.Event()
        self.up = threading.Event()
        self.log = open(args.log, "ab")

    # -- the server ----------------------------------------------------------------------------

    def start(self):
        env = dict(os.environ, ALLOT_LISTEN=f"127.0.0.1:{self.args.port}")
        self.server = subprocess.Popen([self.args.bin, "serve"], env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _ = self.request("GET", "/healthz", token=None)
                if status == 200:
                    self.up.set()
                    return
            except OSError:
                pass
            if self.server.poll() is not None:
                sys.exit(f"allot exited with {self.server.returncode} at start; see {self.args.log}")
            time.sleep(0.05)
        sys.exit("allot did not answer /healthz within 60 s")

    def kill(self):
        self.up.clear()
        self.server.send_signal(signal.SIGKILL)
        self.server.wait()

    def stop(self):
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()

    # -- HTTP ----------------------------------------------------------------------------------

    def request(self, method, path, body=None, token="default", timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.args.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"}
            if token == "default":
                token = self.token
            if token:
                headers["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data else None)
        finally:
            conn.close()

    def must(self, method, path, body=None, status=(200, 201)):
        code, answer = self.request(method, path, body)
        if code not in status:
            sys.exit(f"{method} {path}: {code} {answer}")
        return answer

    # -- the scenario --------------------------------------------------------------------------

    def setup(self):
        password = os.environ["ALLOT_ADMIN_PASSWORD"]
        _, answer = self.request(
            "POST", "/v1/auth/token", {"username": "admin", "password": password}, token=None
        )
        self.token = answer["access_token"]
        self.owner = self.must("GET", "/v1/me")["node_id"]
        self.customer = self.must(
            "POST", f"/v1/nodes/{self.owner}/children", {"kind": "customer", "name": "Crash Customer"}
        )["id"]
        for resource, amount in [("users", 500000), ("module:base", 500000), ("domains", 10)]:
            self.must(
                "POST", f"/v1/nodes/{self.customer}/allocations", {"resource": resource, "amount": amount}
            )
        self.must("POST", f"/v1/nodes/{self.customer}/domains", {"name": "crash.example"})

    def load(self, thread):
        rng = random.Random(thread)
        n = 0
        mailboxes = []
        while not self.stopping.is_set():
            if not self.up.wait(timeout=0.5):
                continue
            n += 1
            op = rng.choice(["node", "allocation", "mailbox", "mailbox", "alias"])
            if op == "alias" and not mailboxes:
                op = "mailbox"
            if op == "node":
                path, body = f"/v1/nodes/{self.owner}/children", {"kind": "customer", "name": f"c {thread} {n}"}
            elif op == "allocation":
                path, body = f"/v1/nodes/{self.customer}/allocations", {"resource": "users", "amount": 1}
            elif op == "mailbox":
                path, body = f"/v1/nodes/{self.customer}/mailboxes", {"address": f"m{thread}-{n}@crash.example"}
            else:
                mailbox = rng.choice(mailboxes)
                path, body = f"/v1/mailboxes/{mailbox}/aliases", {"address": f"a{thread}-{n}@crash.example"}
            try:
                status, answer = self.request("POST", path, body, timeout=10)
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.unanswered += 1
                time.sleep(0.02)
                continue
            with self.lock:
                if 200 <= status < 300:
                    extra = mailbox if op == "alias" else body.get("address")
                    self.written.append((op, answer["id"], extra))
                    if op == "mailbox":
                        mailboxes.append(answer["id"])
                elif status >= 500:
                    self.server_errors += 1
                    print(f"{status} for POST {path}: {answer}", file=sys.stderr)
                else:
                    self.refused += 1
                    print(f"{status} for POST {path}: {answer}", file=sys.stderr)

    def acknowledged(self):
        with self.lock:
            return len(self.written)

    def counts(self):
        counts = {}
        for kind, _, _ in self.written:
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def check_present(self):
        """Every acknowledged write, read back through the API."""
        missing = []
        paths = {"node": "/v1/nodes/{}", "allocation": "/v1/allocations/{}", "mailbox": "/v1/mailboxes/{}"}
        aliases = {}
        for kind, id_, extra in self.written:
            if kind == "alias":
                aliases.setdefault(extra, set()).add(id_)
                continue
            status, answer = self.request("GET", paths[kind].format(id_))
            if status != 200 or answer.get("id") != id_:
                missing.append(f"{kind} {id_} ({status})")
            elif kind == "mailbox" and answer.get("address") != extra:
                missing.append(f"{kind} {id_} has address {answer.get('address')}, not {extra}")
        for mailbox, ids in aliases.items():
            found, cursor = set(), None
            while True:
                path = f"/v1/mailboxes/{mailbox}/aliases?limit=500" + (f"&cursor={cursor}" if cursor else "")
                status, answer = self.request("GET", path)
                if status != 200:
                    break
                found.update(a["id"] for a in answer["items"])
                cursor = answer.get("next_cursor")
                if not cursor:
                    break
            missing.extend(f"alias {a} of mailbox {mailbox}" for a in ids - found)
        return missing


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Seeds what the reports of issue 14 read, in SQL, on a SQLite database already seeded by
bench/seed.py (run it with `--start` at least `--days` before today so every limit was in force):

- a year of usage history: for every node that has a usage counter, every resource and every day
  from `--days` days before today up to yesterday, a `usage_history` row (the limit of its
  allocations, the peak and the end-of-day usage) and the days in `usage_history_days` (all
  closed but yesterday, which the server closes when it opens today, as it would after a
  midnight); each customer's usage climbs from about half its current count to that count
  (yesterday's figures are the counters), five percent lower on Saturdays and Sundays; each
  reseller's and the owner's figures are the sums over their subtree; the peak of a day is the
  higher of the previous day's end and the day's end (usage moves once a day here);
  `active_user_history` holds, per node and day, 60% of the customers' users, rolled up the tree
  (non-zero rows only, as allot keeps them);
- every domain verified (the server would otherwise expire the unverified ones during the run);
- `--events` audit events spread over the nodes of the top reseller's subtree and uniformly over
  the same days, each by the admin account, with the node's and the actor's names.

    python3 bench/seed_reports.py --sqlite allot.db --top <top reseller id> [--days 365] [--events 1000000]

Prints the row counts and the time each part took on stderr.
"""

import argparse
import datetime
import random
import sqlite3
import sys
import time
import uuid

RESOURCES = ("domains", "users", "module:base")
ACTIONS = (
    ("mailbox.create", "mailbox"),
    ("mailbox.delete", "mailbox"),
    ("mailbox.disable", "mailbox"),
    ("domain.create", "domain"),
    ("domain.verify", "domain"),
    ("allocation.update", "allocation"),
    ("account.update", "account"),
)


def history(db, days, today):
    """A consistent year of usage_history, usage_history_days and active_user_history rows."""
    first = today - datetime.timedelta(days=days)
    dates = [(first + datetime.timedelta(days=i)).isoformat() for i in range(days)]
    weekend = [(first + datetime.timedelta(days=i)).weekday() >= 5 for i in range(days)]
    weekend[-1] = False  # yesterday ends on the counters
    n = days
    span = 2 * n - 1
    # used_i = F * (n + i) / (2n - 1), rounded: about F/2 on the first day, F yesterday; 5% lower at weekends.
    parents = dict(db.execute("SELECT id, parent_id FROM nodes"))
    kinds = dict(db.execute("SELECT id, kind FROM nodes"))
    counters = {}
    for node, resource, used in db.execute("SELECT node_id, resource, used FROM usage_counters"):
        counters[(node, resource)] = used
    limits = {}
    for node, resource, amount in db.execute(
        "SELECT node_id, resource, SUM(amount) FROM allocations WHERE active GROUP BY node_id, resource"
    ):
        limits[(node, resource)] = amount
    series = {}  # (node, resource) -> end-of-day usage per day
    active = {}  # node -> active users per day
    for (node, resource), final in counters.items():
        if kinds.get(node) != "customer":
            continue
        used = [(final * (n + i) + span // 2) // span for i in range(n)]
        used = [u - u // 20 if w else u for u, w in zip(used, weekend)]
        series[(node, resource)] = used
        ancestor = parents[node]
        while ancestor is not None:
            total = series.get((ancestor, resource))
            if total is None:
                series[(ancestor, resource)] = list(used)
            else:
                series[(ancestor, resource)] = [a + b for a, b in zip(total, used)]
            ancestor = parents.get(ancestor)
        if resource == "users":
            seen = [u * 3 // 5 for u in used]
            node_up = node
            while node_up is not None:
                total = active.get(node_up)
                active[node_up] = seen if total is None else [a + b for a, b in zip(total, seen)]
                node_up = parents.get(node_up)
    # Every node with a counter gets rows, even one whose subtree never used anything.
    for key in counters:
        series.setdefault(key, [0] * n)

    def usage_rows():
        for node, resource in sorted(series):
            used = series[(node, resource)]
            limit = limits.get((node, resource), 0)
            previous = used[0]
            for day, u in zip(dates, used):
                yield (node, resource, day, limit, max(previous, u), u)
                previous = u

    def active_rows():
        for node in sorted(active):
            for day, count in zip(dates, active[node]):
                if count:
                    yield (node, day, count)

    db.executemany(
        "INSERT INTO usage_history (node_id, resource, day, day_limit, peak, used) VALUES (?, ?, ?, ?, ?, ?)",
        usage_rows(),
    )
    db.executemany(
        "INSERT INTO active_user_history (node_id, day, active_users) VALUES (?, ?, ?)",
        active_rows(),
    )
    db.executemany(
        "INSERT INTO usage_history_days (day, closed) VALUES (?, ?)",
        ((day, 0 if i == n - 1 else 1) for i, day in enumerate(dates)),
    )
    return len(series) * n


def uuid7(micros, rng):
    ms = micros // 1000
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def audit(db, top, days, today, count):
    """`count` audit events over the subtree of `top`, in time order as allot appends them."""
    rng = random.Random(14)
    (path,) = db.execute("SELECT path FROM nodes WHERE id = ?", (top,)).fetchone()
    nodes = db.execute(
        "SELECT id, name FROM nodes WHERE path >= ? AND path < ? ORDER BY path", (path, path[:-1] + "0")
    ).fetchall()
    account, username = db.execute("SELECT id, username FROM accounts WHERE username = 'admin'").fetchone()
    actor = f"account:{account}"
    start = datetime.datetime.combine(today - datetime.timedelta(days=days), datetime.time())
    epoch = datetime.datetime(1970, 1, 1)
    low = int((start - epoch).total_seconds()) * 1_000_000
    high = int((datetime.datetime.combine(today, datetime.time()) - epoch).total_seconds()) * 1_000_000
    times = sorted(rng.randrange(low, high) for _ in range(count))

    def rows():
        for i, micros in enumerate(times):
            micros -= micros % 1_000_000 == 0  # chrono writes no fraction for a whole second
            at = epoch + datetime.timedelta(microseconds=micros)
            node, name = nodes[rng.randrange(len(nodes))]
            action, kind = ACTIONS[i % len(ACTIONS)]
            target = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            after = f'{{"id":"{target}","name":"bench {i}, \\"quoted\\""}}'
            before = None if action.endswith(".create") else after
            yield (
                uuid7(micros, rng),
                at.strftime("%Y-%m-%d %H:%M:%S.%f"),
                actor,
                username,
                node,
                name,
                action,
                kind,
                target,
                before,
                after,
                f"bench-{i}",
            )

    db.executemany(
        "INSERT INTO audit_events (id, at, actor, actor_name, node_id, node_name, action, target_kind, "
        "target_id, before, after, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows(),
    )
    return len(nodes)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", metavar="FILE", required=True)
    parser.add_argument("--top", required=True, help="the top reseller's id (bench/seed.py prints it)")
    parser.add_argument("--days", type=int, default=365, help="days of history before today")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    today = datetime.datetime.now(datetime.timezone.utc).date()
    db = sqlite3.connect(args.sqlite)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -1000000")
    started = time.monotonic()
    with db:
        # Verified domains, as bench/check.sh makes them: the server expires unverified ones (and
        # their mailboxes) in the background, which would change the usage and append events
        # while the reports are measured.
        db.execute("UPDATE domains SET verified_at = ? WHERE verified_at IS NULL", (f"{today} 00:00:00",))
        rows = history(db, args.days, today)
    print(f"usage_history rows: {rows} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    started = time.monotonic()
    with db:
        nodes = audit(db, args.top, args.days, today, args.events)
    print(f"audit_events: {args.events} over {nodes} nodes ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    db.close()


if __name__ == "__main__":
    main()

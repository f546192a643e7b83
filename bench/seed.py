#!/usr/bin/env python3
"""Seeds an allot database with a large tree, in SQL, without going through the API.

The database must have been initialised (`allot init`) and given a licence large enough
(`allot licence set --resource users=... --resource domains=... --resource module:base=...`).
Under the owner it creates one top reseller holding everything, `--resellers` sub-resellers below
it, and `--customers` customers spread over them; every node gets `users`, `domains` and
`module:base` allocations from its parent, and every customer some domains (with their role
addresses) and mailboxes below its limits, each mailbox holding the automatic `base` module, with
the usage counters allot keeps (every reseller and the owner holding the sum over its subtree). The result satisfies every invariant (`allot verify`).

    python3 bench/seed.py --sqlite allot.db --customers 10000            # writes into the file
    python3 bench/seed.py --postgres --customers 10000 | psql "$DATABASE_URL"   # prints SQL

Prints the top reseller's id on stderr as `top_reseller=<uuid>`.
"""

import argparse
import random
import sqlite3
import sys
import uuid

NOW = "2026-01-01 00:00:00"
START = "2026-01-01"


def rows(args, owner_id, owner_path):
    rng = random.Random(42)
    per_customer = {"users": 100, "domains": 5, "module:base": 100}
    customers_per_reseller = -(-args.customers // args.resellers)
    top = str(uuid.uuid4())
    top_path = f"{owner_path}{top}/"
    nodes = [(top, owner_id, top_path, "reseller", "Bench Top Reseller")]
    grants = []
    usage = []
    domains = []
    mailboxes = []
    total = {r: n * args.customers for r, n in per_customer.items()}
    for resource, amount in total.items():
        grants.append((top, owner_id, resource, amount))
    made = 0
    sums = {}  # (node, resource) -> used, for the resellers and the owner above the customers
    for r in range(args.resellers):
        reseller = str(uuid.uuid4())
        path = f"{top_path}{reseller}/"
        count = min(customers_per_reseller, args.customers - made)
        if count <= 0:
            break
        nodes.append((reseller, top, path, "reseller", f"Bench Reseller {r}"))
        for resource, amount in per_customer.items():
            grants.append((reseller, top, resource, amount * count))
        for c in range(count):
            customer = str(uuid.uuid4())
            nodes.append((customer, reseller, f"{path}{customer}/", "customer", f"Bench Customer {made + c}"))
            for resource, amount in per_customer.items():
                grants.append((customer, reseller, resource, amount))
            # Domains first: mailboxes live on them (none without a domain).
            held = [f"d{made + c}-{n}.bench.example" for n in range(rng.randint(0, per_customer["domains"]))]
            users = rng.randint(0, per_customer["users"]) if held else 0
            domains.extend((customer, name) for name in held)
            mailboxes.extend((customer, held[0], f"user{n}") for n in range(users))
            for resource, used in (("domains", len(held)), ("users", users), ("module:base", users)):
                usage.append((customer, resource, used))
                for ancestor in (reseller, top, owner_id):
                    sums[(ancestor, resource)] = sums.get((ancestor, resource), 0) + used
        made += count
    usage.extend((node, resource, used) for (node, resource), used in sums.items())
    return top, nodes, grants, usage, domains, mailboxes


def statements(nodes, grants, usage, domains, mailboxes, boolean_true, start=START):
    for node_id, parent, path, kind, name in nodes:
        yield (
            "INSERT INTO nodes (id, parent_id, path, kind, name, status, version, created_at, updated_at) "
            f"VALUES ('{node_id}', '{parent}', '{path}', '{kind}', '{name}', 'active', 1, '{NOW}', '{NOW}');"
        )
    for node_id, grantor, resource, amount in grants:
        yield (
            "INSERT INTO allocations (id, node_id, grantor_id, resource, amount, starts_on, active, version, created_at, updated_at) "
            f"VALUES ('{uuid.uuid4()}', '{node_id}', '{grantor}', '{resource}', {amount}, '{start}', {boolean_true}, 1, '{NOW}', '{NOW}');"
        )
    for node_id, resource, used in usage:
        yield f"INSERT INTO usage_counters (node_id, resource, used) VALUES ('{node_id}', '{resource}', {used});"
    # The domains and mailboxes the counters count (with each domain's role addresses, which take
    # no seat), so that `allot verify` finds the counters right.
    domain_ids = {}
    for node_id, name in domains:
        domain_ids[name] = str(uuid.uuid4())
        yield (
            "INSERT INTO domains (id, node_id, name, status, verification_token, version, created_at, updated_at) "
            f"VALUES ('{domain_ids[name]}', '{node_id}', '{name}', 'active', 'bench', 1, '{NOW}', '{NOW}');"
        )
        for role in ("postmaster", "abuse"):
            yield mailbox(node_id, domain_ids[name], name, role, "role")
    for node_id, name, local in mailboxes:
        mailbox_id = str(uuid.uuid4())
        yield mailbox(node_id, domain_ids[name], name, local, "import", mailbox_id)
        yield (
            "INSERT INTO mailbox_modules (mailbox_id, module_code, created_at) "
            f"VALUES ('{mailbox_id}', 'base', '{NOW}');"
        )


def mailbox(node_id, domain_id, domain, local, origin, mailbox_id=None):
    return (
        "INSERT INTO mailboxes (id, node_id, domain_id, local_part, address, status, origin, version, created_at, updated_at) "
        f"VALUES ('{mailbox_id or uuid.uuid4()}', '{node_id}', '{domain_id}', '{local}', '{local}@{domain}', 'active', '{origin}', 1, '{NOW}', '{NOW}');"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--sqlite", metavar="FILE", help="seed this SQLite database file")
    target.add_argument("--postgres", action="store_true", help="print SQL for psql (owner looked up by subquery)")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--resellers", type=int, default=100)
    parser.add_argument("--start", default=START, help="the day every allocation starts on (YYYY-MM-DD)")
    args = parser.parse_args()

    if args.sqlite:
        db = sqlite3.connect(args.sqlite)
        owner_id, owner_path = db.execute("SELECT id, path FROM nodes WHERE kind = 'owner'").fetchone()
        top, nodes, grants, usage, domains, mailboxes = rows(args, owner_id, owner_path)
        with db:
            for statement in statements(nodes, grants, usage, domains, mailboxes, "1", args.start):
                db.execute(statement)
        db.close()
    else:
        print("\\set ON_ERROR_STOP on")
        print("BEGIN;")
        print("CREATE TEMP TABLE bench_owner AS SELECT id, path FROM nodes WHERE kind = 'owner';")
        top, nodes, grants, usage, domains, mailboxes = rows(args, "__OWNER_ID__", "__OWNER_PATH__")
        for statement in statements(nodes, grants, usage, domains, mailboxes, "TRUE", args.start):
            statement = statement.replace("'__OWNER_ID__'", "(SELECT id FROM bench_owner)")
            statement = statement.replace("'__OWNER_PATH__", "(SELECT path FROM bench_owner) || '")
            print(statement)
        print("COMMIT;")
    print(f"top_reseller={top}", file=sys.stderr)


if __name__ == "__main__":
    main()

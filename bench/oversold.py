#!/usr/bin/env python3
"""Builds, through the API of a running allot, the lineage the check must walk to refuse a seat.

    python3 bench/oversold.py PORT ADMIN_PASSWORD

Under the owner: reseller `Bench Lineage` (10 users, 10 base, 4 domains), below it reseller
`Bench Oversold` (the same 10 and 10, and an oversell ratio of 2 on both: it may grant 20), and
below that two customers of 10 users each. The first fills its 10 seats, so the oversold reseller's
real seats are all taken; the second has 10 seats of its own left and `auto_enrol` on. An outbound
check for an unknown sender at the second customer's domain then passes every test of its own and
is refused `ancestor_exhausted` after a walk up its lineage (customer, oversold reseller, reseller,
owner): the check's longest path that writes nothing.

The owner needs 10 users, 10 module:base and 4 domains left over (bench/lib.sh's seed_database
leaves them). Prints the address to ask about. Domains are left unverified: the caller marks them
verified in SQL, as seed_database does for the seeded ones (the setup server runs with
ALLOT_REQUIRE_DOMAIN_VERIFICATION=false).
"""

import json
import sys
import urllib.request

port, password = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"


def call(method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(request, data) as answer:
            text = answer.read()
    except urllib.error.HTTPError as error:
        sys.exit(f"{method} {path}: {error.code} {error.read().decode()}")
    return json.loads(text) if text else None


token = call("POST", "/v1/auth/token", {"username": "admin", "password": password})["access_token"]
owner = call("GET", "/v1/me", token=token)["node_id"]


def child(parent, kind, name, grants):
    node = call("POST", f"/v1/nodes/{parent}/children", {"kind": kind, "name": name}, token)["id"]
    for resource, amount in grants.items():
        call("POST", f"/v1/nodes/{node}/allocations",
             {"resource": resource, "amount": amount, "starts_on": "2026-01-01"}, token)
    return node


seats = {"users": 10, "module:base": 10}
lineage = child(owner, "reseller", "Bench Lineage", {**seats, "domains": 4})
oversold = child(lineage, "reseller", "Bench Oversold", {**seats, "domains": 4})
call("PUT", f"/v1/nodes/{oversold}/oversell", {"ratios": {"users": 2, "module:base": 2}}, token)
full = child(oversold, "customer", "Bench Full", {**seats, "domains": 1})
room = child(oversold, "customer", "Bench Room", {**seats, "domains": 1})
call("POST", f"/v1/nodes/{full}/domains", {"name": "full.lineage.example"}, token)
call("POST", f"/v1/nodes/{room}/domains", {"name": "room.lineage.example"}, token)
for n in range(10):
    call("POST", f"/v1/nodes/{full}/mailboxes", {"address": f"user{n}@full.lineage.example"}, token)
print("newcomer@room.lineage.example")

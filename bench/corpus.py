#!/usr/bin/env python3
"""Generates a webhook-like corpus, one JSON payload a line, deterministically (seeded).

Mix: ~20% large nested GitHub-style events (~5-8 KB), ~80% small sparse events drawn from
~240 distinct top-level fields; a few type conflicts (a field that is mostly an integer but
sometimes a string or a float) and integers beyond 64 bits.

    python3 bench/corpus.py --count 100000 > corpus.jsonl
"""
import argparse
import json
import random
import sys
import zlib

FIELDS = [f"field_{i:03d}" for i in range(220)] + [
    "event", "id", "created_at", "amount", "currency", "email", "status", "customer_id",
    "order_id", "sku", "quantity", "price", "discount", "country", "city", "zip",
    "phone", "referrer", "campaign", "device",
]


def github_event(rng, i):
    return {
        "action": rng.choice(["opened", "closed", "synchronize", "labeled"]),
        "number": i,
        "id": 10_000_000 + i,
        "created_at": "2026-11-%02dT%02d:%02d:%02dZ" % (1 + i % 28, i % 24, i % 60, (i * 7) % 60),
        "pull_request": {
            "url": f"https://api.github.example/repos/acme/widgets/pulls/{i}",
            "id": 900_000_000 + i,
            "title": "Fix " + " ".join(rng.choice(["the", "flaky", "parser", "cache", "race"]) for _ in range(8)),
            "body": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(rng.randint(800, 2500))),
            "user": {"login": f"user{i % 500}", "id": i % 500, "site_admin": False},
            "labels": [{"id": j, "name": f"label-{j}", "color": "ededed"} for j in range(rng.randint(0, 5))],
            "head": {"ref": f"branch-{i}", "sha": "%040x" % rng.getrandbits(160)},
            "base": {"ref": "main", "sha": "%040x" % rng.getrandbits(160)},
            "merged": rng.random() < 0.3,
            "additions": rng.randint(0, 5000),
            "deletions": rng.randint(0, 5000),
        },
        "repository": {
            "id": 123456, "name": "widgets", "full_name": "acme/widgets", "private": False,
            "topics": ["webhooks", "rust", "singer"], "stargazers_count": rng.randint(0, 10000),
        },
        "sender": {"login": f"user{i % 500}", "id": i % 500, "type": "User"},
    }


def small_event(rng, i, conflicts=True):
    e = {"event": rng.choice(["order.created", "order.paid", "customer.updated", "refund"]),
         "id": f"evt_{i:09d}",
         "created_at": "2026-11-%02dT%02d:%02d:%02d.%03dZ" % (1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 1000)}
    for name in rng.sample(FIELDS, rng.randint(6, 18)):
        if not conflicts and name in e:
            continue  # the sampled value's type would differ from the fixed field's
        kind = zlib.crc32(name.encode()) % 5
        if kind == 0:
            e[name] = rng.randint(0, 1_000_000)
        elif kind == 1:
            e[name] = round(rng.random() * 1000, 2)
        elif kind == 2:
            e[name] = rng.choice([True, False, None])
        elif kind == 3:
            e[name] = {"nested": rng.randint(0, 9), "tags": ["a", "b"][: rng.randint(0, 2)]}
        else:
            e[name] = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 30)))
    # Type conflicts and huge integers, rarely, as real webhooks have them.
    r = rng.random() if conflicts else 1.0
    if r < 0.01:
        e["amount"] = "12.50"  # a string where an integer usually is
    elif r < 0.02:
        e["amount"] = 12.5
    elif r < 0.025:
        e["big_id"] = 18446744073709551615 + i  # beyond u64
    else:
        e["amount"] = rng.randint(100, 100000)
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--large-share", type=float, default=0.2)
    ap.add_argument("--no-conflicts", action="store_true",
                    help="no type conflicts, no huge integers (for loaders that stop on them)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = sys.stdout
    for i in range(args.count):
        if rng.random() < args.large_share:
            e = github_event(rng, i)
        else:
            e = small_event(rng, i, conflicts=not args.no_conflicts)
        out.write(json.dumps(e, separators=(",", ":")))
        out.write("\n")


if __name__ == "__main__":
    main()

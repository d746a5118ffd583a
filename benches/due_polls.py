#!/usr/bin/env python3
"""The cost of finding the messages due for a Get when most of a big table is
finished: the tracker's queries (as in src/store/mod.rs, `claim_due` and
`next_poll_at`) on a campaign of N messages of which 10,000 are
outstanding, against the same 10,000 outstanding in a campaign of 10,000.
Prints the query plans, the time to find 64 due messages and the next due
time, and the time of the whole claim (which also updates the 64 rows).

    due_polls.py BIG_DB SMALL_DB   (databases made by `bpsms import`; changed)
"""
import sqlite3
import sys
import time

CLAIM = """UPDATE messages SET poll_claimed = 1
 WHERE id IN (SELECT id FROM messages
              WHERE campaign_id = ? AND next_poll_at IS NOT NULL AND next_poll_at <= ?
                AND poll_claimed = 0
              ORDER BY next_poll_at LIMIT ?)
 RETURNING id, sid, kind, state, polls, track_until"""
FIND = """SELECT id FROM messages
 WHERE campaign_id = ? AND next_poll_at IS NOT NULL AND next_poll_at <= ? AND poll_claimed = 0
 ORDER BY next_poll_at LIMIT ?"""
NEXT = "SELECT MIN(next_poll_at) FROM messages WHERE campaign_id = ? AND next_poll_at IS NOT NULL"
OUTSTANDING = 10_000
ROUNDS = 300


def prepare(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    (n,) = db.execute("SELECT COUNT(*) FROM messages").fetchone()
    step = max(n // OUTSTANDING, 1)
    db.execute("BEGIN")
    # Everything finished, then every step-th message outstanding, due at
    # spread-out times.
    db.execute("UPDATE messages SET state = 'delivered', sid = 'S' || id, next_poll_at = NULL")
    db.execute(
        "UPDATE messages SET state = 'queued', next_poll_at = 1000 + id % 997, poll_claimed = 0 "
        "WHERE id % ? = 0", (step,))
    db.execute("COMMIT")
    db.execute("ANALYZE")
    return db


def measure(path: str) -> tuple[float, float]:
    db = prepare(path)
    (n,) = db.execute("SELECT COUNT(*) FROM messages").fetchone()
    (due,) = db.execute("SELECT COUNT(*) FROM messages WHERE next_poll_at IS NOT NULL").fetchone()
    (campaign,) = db.execute("SELECT id FROM campaigns").fetchone()
    print(f"{n:,} messages, {due:,} outstanding:")
    for row in db.execute("EXPLAIN QUERY PLAN " + CLAIM, (campaign, 5000, 64)):
        print("   plan:", row[3])
    for row in db.execute("EXPLAIN QUERY PLAN " + NEXT, (campaign,)):
        print("   plan (next due):", row[3])
    start = time.perf_counter()
    for _ in range(ROUNDS * 10):
        found = db.execute(FIND, (campaign, 5000, 64)).fetchall()
        db.execute(NEXT, (campaign,)).fetchone()
    find = (time.perf_counter() - start) / (ROUNDS * 10)
    start = time.perf_counter()
    for _ in range(ROUNDS):
        db.execute("BEGIN")
        claimed = db.execute(CLAIM, (campaign, 5000, 64)).fetchall()
        db.execute("ROLLBACK")
    claim = (time.perf_counter() - start) / ROUNDS
    print(f"   finding {len(found)} due + the next due time: {find * 1e6:,.0f} µs; "
          f"claiming them (UPDATE … RETURNING, rolled back): {claim * 1e6:,.0f} µs")
    return find, claim


def main() -> None:
    big = measure(sys.argv[1])
    small = measure(sys.argv[2])
    print(f"ratio big/small: finding {big[0] / small[0]:.2f}, claiming {big[1] / small[1]:.2f}")


if __name__ == "__main__":
    main()

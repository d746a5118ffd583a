#!/usr/bin/env python3
"""Reads the simulator's ledger (JSON from /_mock/ledger) on stdin and prints
the send rate as the simulator saw it: how many sends, their span, the mean
rate, and the most sends in any 1-second window (every window that starts
at a send's receive time, which is where the maximum of a sliding window
always is). With --by-from, the same for each sending number."""
import json
import sys
from bisect import bisect_left


def rate(times: list) -> dict:
    times = sorted(times)
    n = len(times)
    if n < 2:
        return {"sends": n}
    span_ms = times[-1] - times[0]
    max_window = max(bisect_left(times, t + 1000) - i for i, t in enumerate(times))
    return {
        "sends": n,
        "span_s": span_ms / 1000,
        # n sends span n - 1 intervals.
        "mean_per_s": round((n - 1) / (span_ms / 1000), 2) if span_ms else None,
        "max_in_1s_window": max_window,
    }


def main() -> None:
    entries = json.load(sys.stdin)
    if "--by-from" in sys.argv[1:]:
        senders = sorted({e["from"] for e in entries})
        report = {"all": rate([e["received_at_ms"] for e in entries])}
        for sender in senders:
            report[sender] = rate([e["received_at_ms"] for e in entries if e["from"] == sender])
        print(json.dumps(report))
    else:
        print(json.dumps(rate([e["received_at_ms"] for e in entries])))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Shared arithmetic of the side-by-side benchmark scripts.

usage: summary.py tps RUN/metrics.jsonl     mean tokens/s of a malus run, first update excluded
       summary.py compare RESULTS PEER LABEL  tokens/s (mean) and peak RSS (max) of malus and
                                            the peer over rounds; RESULTS has lines
                                            `NAME TOKENS_PER_S PEAK_RSS_KB`
"""
import json
import sys

if sys.argv[1] == "tps":
    rows = [json.loads(line) for line in open(sys.argv[2])][1:]
    print(sum(r["tokens_per_s"] for r in rows) / len(rows))
else:
    results, peer, label = sys.argv[2:5]
    rows = [line.split() for line in open(results)]

    def agg(name):
        r = [(float(t), int(m)) for n, t, m in rows if n == name]
        return sum(t for t, _ in r) / len(r), max(m for _, m in r) / 1024

    p, pm = agg(peer)
    m, mm = agg("malus")
    print(f"tokens/s: {label} {p:.0f}, malus {m:.0f}, ratio malus/{label} {m / p:.2f}")
    print(f"peak RSS: {label} {pm:.0f} MiB, malus {mm:.0f} MiB, ratio {mm / pm:.2f}")

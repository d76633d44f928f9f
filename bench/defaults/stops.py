"""Evaluates candidate stopping rules on recorded paths."""
import sys, json
import numpy as np
res = sum((json.load(open(f)) for f in sys.argv[1:]), [])

def at(path, pred):
    for q in path:
        if pred(q):
            return q
    return path[-1]

for r in res:
    P = r["path"]
    best = max(P, key=lambda q: q["f1"])
    line = [f"{r['name']}/{r['seed']}", f"peakF1 {best['f1']:.3f}@{best['k']}"]
    for tau in [0.5, 0.3, 0.2, 0.1, 0.05]:
        q = at(P, lambda q: q["gn"] <= tau)
        line.append(f"gn<={tau}:{q['f1']:.3f}/{q['gap']:.2f}@{q['k']}")
    q = P[-1]; line.append(f"end:{q['f1']:.3f}/{q['gap']:.2f}@{q['k']} gn{q['gn']:.2f}")
    print(" ".join(line))

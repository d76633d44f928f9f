"""Median F1 / gap closed at checkpoints over seeds, for a rule on several data sets."""
import sys, json
import numpy as np
from proto import dataset
from sweep import path

names = sys.argv[1].split(",")
rule = json.loads(sys.argv[2])
p = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
seeds = range(int(sys.argv[4]) if len(sys.argv) > 4 else 5)
iters = int(sys.argv[5]) if len(sys.argv) > 5 else 200
cks = [5, 10, 20, 40, 80, 120, 200]
for n in names:
    rows = []
    for s in seeds:
        d = dataset(n, s, p)
        r = path(d, rule, iters, 5)
        rows.append({q["k"]: (q["f1"], q["gap"]) for q in r["path"]})
    line = []
    for k in cks:
        if k in rows[0]:
            f = np.median([x[k][0] for x in rows]); g = np.median([x[k][1] for x in rows])
            line.append(f"{k}:{f:.3f}/{g:.2f}")
    print(n, rule, " ".join(line), flush=True)

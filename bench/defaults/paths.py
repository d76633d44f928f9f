"""Records full paths (every `every` iterations) for a rule; saved as JSON for stop-rule analysis."""
import sys, json
from proto import dataset
from sweep import path

names = sys.argv[1].split(","); rule = json.loads(sys.argv[2]); p = float(sys.argv[3])
seeds = [int(s) for s in sys.argv[4].split(",")]; iters = int(sys.argv[5]); every = int(sys.argv[6]); out = sys.argv[7]
res = []
for n in names:
    for s in seeds:
        r = path(dataset(n, s, p), rule, iters, every)
        r.update(name=n, seed=s, p=p, rule=rule)
        res.append(r)
        print(n, s, "done %.1fs" % r["secs"], flush=True)
json.dump(res, open(out, "w"))

"""Paths of the cleaning iteration under candidate default rules; prints per-checkpoint metrics."""
import sys, time, json
import numpy as np
from proto import *


def settings(d, rule):
    X = d["Xtr"]
    N, m = X.shape
    Nv = d["Xva"].shape[0]
    tr = np.sum(X * X)
    lam = rule["lam"] * tr / m if rule.get("lam_rel", True) else rule["lam"]
    gamma = rule["gamma"] * Nv / N if rule.get("gamma_rel", True) else rule["gamma"]
    return lam, gamma


def path(d, rule, iters=150, every=1, verbose=False):
    lam, gamma = settings(d, rule)
    c = Cleaner(d, lam, gamma)
    N = c.X.shape[0]
    u = np.zeros(N)
    mask = d["mask"]
    out = []
    t0 = time.time()
    ones = np.ones(N)
    unw, _ = kept_eval(d, ones.astype(bool), lam)
    orc, _ = kept_eval(d, ~mask, lam)
    alpha = None
    prev_keep = np.ones(N, bool)
    g0 = None
    for k in range(iters + 1):
        gr, W, ws, phi, f = c.grad(u)
        pg = u - np.clip(u - gr, -c.B, c.B)
        if g0 is None:
            g0 = gr.copy()
            r = rule["alpha"]
            if r[0] == "fixed":
                alpha = r[1]
            elif r[0] == "inf":  # first step moves the largest logit by c
                alpha = r[1] / np.max(np.abs(gr))
            elif r[0] == "rms":
                alpha = r[1] / np.sqrt(np.mean(gr ** 2))
            elif r[0] == "q":  # quantile
                alpha = r[1] / np.quantile(np.abs(gr), r[2])
        keep = u >= 0
        if k % every == 0 or k == iters:
            ke, _ = kept_eval(d, keep, lam)
            rec = dict(k=k, f1=f1(keep, mask), kva=ke["va"], kte=ke["te"], f=f, phi=phi,
                       gn=np.linalg.norm(pg) / np.linalg.norm(g0), flips=int(np.sum(keep != prev_keep)),
                       flagged=int(np.sum(~keep)), ite=acc(d["Xte"], d["yte"], W), iva=acc(d["Xva"], d["yva"], W))
            rec["gap"] = (rec["kte"] - unw["te"]) / (orc["te"] - unw["te"])
            out.append(rec)
            if verbose:
                print(json.dumps({a: (round(b, 4) if isinstance(b, float) else b) for a, b in rec.items()}), flush=True)
        prev_keep = keep
        u = np.clip(u - alpha * gr, -c.B, c.B)
    return dict(lam=lam, gamma=gamma, alpha=alpha, unw=unw, orc=orc, path=out, secs=time.time() - t0)


if __name__ == "__main__":
    name, seed, p = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rule = json.loads(sys.argv[4])
    iters = int(sys.argv[5]) if len(sys.argv) > 5 else 150
    every = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    d = dataset(name, seed, p)
    r = path(d, rule, iters, every, verbose=True)
    print("lam %.4g gamma %.4g alpha %.4g unw %s orc %s secs %.1f" % (r["lam"], r["gamma"], r["alpha"], r["unw"], r["orc"], r["secs"]))

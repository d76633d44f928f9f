"""The candidate default rule end to end: settings from the data, iterate, stop when the
projected gradient of phi falls to `tau` times its start value (or `max_iter`). Prints per data
set and seed: F1, gap closed by the kept-retrained model, iterations, seconds."""
import sys, json, time
import numpy as np
from proto import *


STD = False


def scale_columns(d):
    """Divides each feature by its root mean square over the training samples (no centering, so
    a model on the scaled features maps back exactly: W_user = W / rms_j row-wise)."""
    r = np.std(d["Xtr"], 0) if STD else np.sqrt(np.mean(d["Xtr"] ** 2, 0))
    r[r == 0] = 1.0
    d = dict(d)
    for k in ("Xtr", "Xva", "Xte"):
        d[k] = d[k] / r
    return d


def run_rule(d, lam_rel=0.01, gamma_rel=100.0, c=0.05, tau=0.5, max_iter=1000, B=10.0, fixed=None, scale=False):
    if scale:
        d = scale_columns(d)
    X = d["Xtr"]
    X = d["Xtr"]; N, m = X.shape; Nv = d["Xva"].shape[0]
    t0 = time.time()
    if fixed:  # the old Fashion-MNIST recipe
        lam, gamma, alpha, max_iter, tau = fixed["lam"], fixed["gamma"], fixed["alpha"], fixed["iters"], 0.0
    else:
        lam = lam_rel * (N if STD and scale else np.sum(X * X) / m)
        gamma = gamma_rel * Nv / N
        alpha = None
    cl = Cleaner(d, lam, gamma, B=B)
    u = np.zeros(N); g0 = None; k = 0
    while True:
        gr = cl.grad(u)[0]
        if alpha is None:
            alpha = c / np.sqrt(np.mean(gr ** 2))
        # the projected-gradient mapping at the run's own step, as the library's records have it
        pg = np.linalg.norm(u - np.clip(u - alpha * gr, -B, B)) / alpha
        if g0 is None:
            g0 = pg
        elif pg <= tau * g0 or k >= max_iter:
            break
        u = np.clip(u - alpha * gr, -B, B); k += 1
    secs = time.time() - t0
    keep = u >= 0
    unw, _ = kept_eval(d, np.ones(N, bool), lam, ("te",))
    orc, _ = kept_eval(d, ~d["mask"], lam, ("te",))
    kp, _ = kept_eval(d, keep, lam, ("te",))
    den = orc["te"] - unw["te"]
    gap = (kp["te"] - unw["te"]) / den if den != 0 else float("nan")
    return dict(f1=f1(keep, d["mask"]), gap=gap, iters=k, secs=secs, unw=unw["te"], orc=orc["te"], kept=kp["te"])


if __name__ == "__main__":
    import os
    STD = os.environ.get("STD") == "1"
    names = sys.argv[1].split(","); kw = json.loads(sys.argv[2]); p = float(sys.argv[3])
    seeds = range(int(sys.argv[4]) if len(sys.argv) > 4 else 5)
    for n in names:
        rs = [run_rule(dataset(n, s, p), **kw) for s in seeds]
        med = lambda key: np.nanmedian([r[key] for r in rs])
        q = lambda key, a: np.nanquantile([r[key] for r in rs], a)
        print(f"{n} p={p} {kw} F1 {med('f1'):.3f} [{q('f1',.1):.3f},{q('f1',.9):.3f}] gap {med('gap'):.2f} [{q('gap',.1):.2f},{q('gap',.9):.2f}] "
              f"it {med('iters'):.0f} s {med('secs'):.2f} unw {med('unw'):.3f} orc {med('orc'):.3f} kept {med('kept'):.3f}", flush=True)

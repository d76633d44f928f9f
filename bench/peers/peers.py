"""NumPy and JAX peers of one PBGD iteration on representation learning, and of one penalty-
gradient evaluation of hyper-cleaning (issue 7).

Reads the cases that `bilevel bench --out DIR` exported (seeded data, start point, step sizes,
our iterates after a few iterations and our per-iteration time), runs the same iterations in
four versions, checks that every version agrees with ours before timing it, and prints the
table. Each version is "naive" (the formulas as they read: X W1 W2 left to right, so X W1 is
formed) or "best" (Z = W1 W2 first, right-hand sides [W2, w] stacked into one product with X
and [R, R_w] into one transposed product). JAX versions are jit-compiled with float64; compile
time is measured apart.

Hyper-cleaning (method.md section 7, least squares on one-hot labels, psi = sigmoid(s u)):
  f = 1/2||Xv W - Yv||^2, g(u, W) = 1/2 sum_i psi_i ||W^T x_i - y_i||^2 + lam/2 ||W||^2;
  du = gamma (dg/du(u, W) - dg/du(u, w)), dW = df/dW + gamma dg/dW (u, W); naive forms diag(psi).

Algorithm (method.md section 4, one warm inner step, f = 1/2||Xv W1 W2 - Yv||^2,
g = 1/2||Xt W1 W2 - Yt||^2):
  Jacobi:       w -= beta dg/dW2(W1, w); (dW1, dW2) = grad L_gamma(W1, W2; w); both step.
  Gauss-Seidel: W2 -= alpha dL/dW2(W1, W2); w -= beta dg/dW2(W1, w);
                W1 -= alpha dL/dW1(W1, W2_new; w).
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

AGREE_RTOL = 1e-8  # relative error of W1, W2 and w after the check iterations


# ------------------------------------------------------------------ formulas as they read
def naive_grads(xp, X, Y, W1, W2):
    R = X @ W1 @ W2 - Y
    return X.T @ R @ W2.T, (X @ W1).T @ R


def naive_step(xp, d, W1, W2, w, c):
    Xt, Yt, Xv, Yv = d
    a, b, gam = c["alpha"], c["beta"], c["gamma"]
    if c["update"] == "jacobi":
        w = w - b * naive_grads(xp, Xt, Yt, W1, w)[1]
        fu, fv = naive_grads(xp, Xv, Yv, W1, W2)
        gu, gv = naive_grads(xp, Xt, Yt, W1, W2)
        hu, _ = naive_grads(xp, Xt, Yt, W1, w)
        return W1 - a * (fu + gam * (gu - hu)), W2 - a * (fv + gam * gv), w
    _, fv = naive_grads(xp, Xv, Yv, W1, W2)
    _, gv = naive_grads(xp, Xt, Yt, W1, W2)
    W2 = W2 - a * (fv + gam * gv)
    w = w - b * naive_grads(xp, Xt, Yt, W1, w)[1]
    fu, _ = naive_grads(xp, Xv, Yv, W1, W2)
    gu, _ = naive_grads(xp, Xt, Yt, W1, W2)
    hu, _ = naive_grads(xp, Xt, Yt, W1, w)
    return W1 - a * (fu + gam * (gu - hu)), W2, w


# ------------------------------------------ best order, stacked right-hand sides
def best_step(xp, d, W1, W2, w, c):
    Xt, Yt, Xv, Yv = d
    a, b, gam = c["alpha"], c["beta"], c["gamma"]
    n = W2.shape[1]
    Yt2 = xp.hstack([Yt, Yt])
    if c["update"] == "jacobi":
        G = Xt.T @ (Xt @ (W1 @ w) - Yt)
        w = w - b * (W1.T @ G)
        VW = xp.hstack([W2, w])
        Z = W1 @ VW
        Gt = Xt.T @ (Xt @ Z - Yt2)
        Gf = Xv.T @ (Xv @ Z[:, :n] - Yv)
        C = xp.hstack([Gf + gam * Gt[:, :n], -gam * Gt[:, n:]])
        return W1 - a * (C @ VW.T), W2 - a * (W1.T @ C[:, :n]), w
    # v step stacked with the inner step (same W1).
    Z = W1 @ xp.hstack([W2, w])
    Gt = Xt.T @ (Xt @ Z - Yt2)
    Gf = Xv.T @ (Xv @ Z[:, :n] - Yv)
    D = W1.T @ xp.hstack([Gf + gam * Gt[:, :n], Gt[:, n:]])
    W2 = W2 - a * D[:, :n]
    w = w - b * D[:, n:]
    VW = xp.hstack([W2, w])
    Z = W1 @ VW
    Gt = Xt.T @ (Xt @ Z - Yt2)
    Gf = Xv.T @ (Xv @ Z[:, :n] - Yv)
    C = xp.hstack([Gf + gam * Gt[:, :n], -gam * Gt[:, n:]])
    return W1 - a * (C @ VW.T), W2, w


STEPS = {"naive": naive_step, "best": best_step}


# ------------------------------------------------------------------------- hyper-cleaning
def one_hot(xp, labels, n):
    return (labels.reshape(-1, 1) == xp.arange(n).reshape(1, -1)).astype(xp.float64)


def cleaning_naive(xp, d, u, v, w, c):
    Xt, Yt, Xv, Yv = d
    s, lam, gam = c["alpha"], c["beta"], c["gamma"]
    psi = 1.0 / (1.0 + xp.exp(-s * u[:, 0]))
    Rv = Xv @ v - Yv
    R = Xt @ v - Yt
    Rw = Xt @ w - Yt
    lv = 0.5 * xp.sum(R * R, axis=1)
    lw = 0.5 * xp.sum(Rw * Rw, axis=1)
    f = 0.5 * xp.sum(Rv * Rv)
    g = psi @ lv + 0.5 * lam * xp.sum(v * v)
    gs = psi @ lw + 0.5 * lam * xp.sum(w * w)
    gv = Xt.T @ xp.diag(psi) @ R + lam * v
    du = gam * (s * psi * (1.0 - psi) * (lv - lw))
    dv = Xv.T @ Rv + gam * gv
    return xp.stack([f, g, gs]), du, dv


def cleaning_best(xp, d, u, v, w, c):
    Xt, Yt, Xv, Yv = d
    s, lam, gam = c["alpha"], c["beta"], c["gamma"]
    n = v.shape[1]
    psi = 1.0 / (1.0 + xp.exp(-s * u[:, 0]))
    Rv = Xv @ v - Yv
    R2 = Xt @ xp.hstack([v, w]) - xp.hstack([Yt, Yt])
    lv = 0.5 * xp.sum(R2[:, :n] ** 2, axis=1)
    lw = 0.5 * xp.sum(R2[:, n:] ** 2, axis=1)
    f = 0.5 * xp.sum(Rv * Rv)
    g = psi @ lv + 0.5 * lam * xp.sum(v * v)
    gs = psi @ lw + 0.5 * lam * xp.sum(w * w)
    du = gam * (s * psi * (1.0 - psi) * (lv - lw))
    dv = Xv.T @ Rv + gam * (Xt.T @ (psi[:, None] * R2[:, :n]) + lam * v)
    return xp.stack([f, g, gs]), du, dv


CLEANING = {"naive": cleaning_naive, "best": cleaning_best}


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-300))


def timed(fn, state, budget):
    """Median seconds of one call of fn(state) -> state, over repetitions filling ~budget s."""
    t = time.perf_counter()
    state = fn(state)
    probe = time.perf_counter() - t
    reps = int(min(max(budget / max(probe, 1e-7), 11), 4001))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        state = fn(state)
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2], reps


def run_case(case_dir, jax_mod, budget):
    c = json.loads((case_dir / "case.json").read_text())
    load = lambda name: np.load(case_dir / f"{name}.npy")
    if c["kind"] == "cleaning":
        n = int(max(load("labels_trn").max(), load("labels_val").max())) + 1
        d = (load("x_trn"), one_hot(np, load("labels_trn")[:, 0], n),
             load("x_val"), one_hot(np, load("labels_val")[:, 0], n))
        s0 = tuple(load(k) for k in ("u", "v", "w"))
        ours_k = (load("values")[:, 0], load("du")[:, 0], load("dv"))
        versions, iters = CLEANING, 1
    else:
        d = tuple(load(k) for k in ("x_trn", "y_trn", "x_val", "y_val"))
        s0 = tuple(load(k) for k in ("w1_0", "w2_0", "w_0"))
        ours_k = tuple(load(k) for k in ("w1_k", "w2_k", "w_k"))
        versions, iters = STEPS, c["check_iters"]
    # Replearn steps map a state to the next; a cleaning evaluation always starts from s0.
    chain = c["kind"] != "cleaning"
    out = {"case": c["name"], "ours_s": c["seconds"], "floor_s": c["floor"], "peers": {}}
    for lib in ("numpy", "jax"):
        if lib == "jax" and jax_mod is None:
            continue
        for version, step in versions.items():
            key = f"{lib}-{version}"
            compile_s = None
            if lib == "numpy":
                call = lambda s, step=step: step(np, d, *s, c)
            else:
                jax, jnp = jax_mod
                dd = tuple(jnp.asarray(x) for x in d)
                jit = jax.jit(lambda dd, W1, W2, w, step=step: step(jnp, dd, W1, W2, w, c))
                t = time.perf_counter()
                jit.lower(dd, *s0).compile()
                compile_s = time.perf_counter() - t
                call = lambda s, jit=jit, dd=dd: jax.block_until_ready(jit(dd, *s))
            fn = call if chain else (lambda s, call=call: (call(s0), s)[1])
            # Agreement first: the same iterations from the same start as ours.
            s = s0
            for _ in range(iters):
                s = call(s)
            errs = [rel_err(a, b) for a, b in zip(s, ours_k)]
            ok = max(errs) <= AGREE_RTOL
            rec = {"max_rel_err": max(errs), "agrees": ok, "compile_s": compile_s}
            if ok:
                rec["seconds"], rec["reps"] = timed(fn, s if chain else s0, budget)
            out["peers"][key] = rec
            print(f"  {c['name']:>20} {key:<12} err {max(errs):.1e} "
                  + (f"{rec['seconds'] * 1e3:9.3f} ms" if ok else "DISAGREES: not timed")
                  + (f"  (compile {compile_s:.2f} s)" if compile_s is not None else ""),
                  file=sys.stderr, flush=True)
    return out


def table(results):
    head = ("| case | ours (ms) | NumPy naive | NumPy best | JAX naive | JAX best | "
            "fastest peer / ours | floor (ms) | ours / floor | JAX compile (s) |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        p = r["peers"]
        ms = lambda k: (f"{p[k]['seconds'] * 1e3:.3f}" if k in p and p[k]["agrees"]
                        else ("disagrees" if k in p else "—"))
        timed_peers = [v["seconds"] for v in p.values() if v["agrees"]]
        fastest = min(timed_peers) if timed_peers else float("nan")
        comp = ", ".join(f"{p[k]['compile_s']:.2f}" for k in ("jax-naive", "jax-best") if k in p)
        lines.append(
            f"| {r['case']} | {r['ours_s'] * 1e3:.3f} | {ms('numpy-naive')} | {ms('numpy-best')} "
            f"| {ms('jax-naive')} | {ms('jax-best')} | {fastest / r['ours_s']:.2f} "
            f"| {r['floor_s'] * 1e3:.3f} | {r['ours_s'] / r['floor_s']:.2f} | {comp} |")
    return "\n".join(lines)


def main():
    root = Path(sys.argv[1])
    budget = float(os.environ.get("PEER_BUDGET_S", "1.5"))
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        jax_mod = (jax, jnp)
        jax_version = jax.__version__
    except ImportError:
        jax_mod, jax_version = None, None
    ours = json.loads((root / "ours.json").read_text())
    results = [run_case(root / c["name"], jax_mod, budget) for c in ours["cases"]]
    summary = {
        "numpy": np.__version__,
        "jax": jax_version,
        "loadavg_end": open("/proc/loadavg").read().strip(),
        "results": results,
    }
    (root / "peers.json").write_text(json.dumps(summary, indent=2))
    print(f"NumPy {np.__version__}, JAX {jax_version}; ours: threads {ours['threads']}, "
          f"GEMM {ours['rates']['gemm_gflops']:.1f} GFLOP/s, "
          f"read {ours['rates']['read_gbs']:.1f} GB/s; load average at start "
          f"{ours['loadavg_start']}, after peers {summary['loadavg_end']}")
    print(table(results))
    bad = [(r["case"], k) for r in results for k, v in r["peers"].items() if not v["agrees"]]
    if bad:
        print(f"peers disagreeing with ours (not timed): {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""NumPy and JAX peers of one PBGD iteration on representation learning, and of one penalty-
gradient evaluation of hyper-cleaning (issue 7).

Reads the cases that `bilevel bench --out DIR` exported (seeded data, start point, step sizes,
our iterates after a few iterations and our per-iteration time), runs the same iterations in
four versions, checks that every version agrees with ours before timing it, and prints the
table. Each version is "naive" (the formulas as they read: X W1 W2 left to right, so X W1 is
formed) or "best" (Z = W1 W2 first, right-hand sides [W2, w] stacked into one product with X
and [R, R_w] into one transposed product). JAX versions are jit-compiled with float64; compile
time is measured apart. Representation learning also runs "best-r", the best order over the R
of a QR of each X with N >= m (what our passes read), shown apart from the four versions, and
JAX's best orders once more with 100 iterations inside one compiled lax.fori_loop ("-loop":
the per-call dispatch paid once per 100 iterations, as in a JAX training loop), timed per
iteration. Every per-iteration time is the smallest of three medians, as ours.

Whole runs: representation learning (Jacobi) to a relative distance of 1e-6 from the penalty
optimum, in as many iterations as ours took (best orders only; JAX in one fori_loop), and the
whole Fashion-MNIST hyper-cleaning run of the `cleaning` experiment; the fastest of three.

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

from softmax import run_softmax_case, softmax_table

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


# ------------------------------------- the best order over R (not one of the four versions)
def r_form(d):
    """Replaces each (X, Y) with N >= m by (R, Q^T Y) from X = QR: the gradients (all the step
    uses) are the same, X^T(XZ - Y) = R^T(RZ - Q^T Y), from a matrix of m x m instead of N x m.
    This is the algebra of our passes (kernels::LsData), so that its gain is shown apart from
    the implementation's. Computed once per case, outside the timing."""
    out = []
    for X, Y in ((d[0], d[1]), (d[2], d[3])):
        if X.shape[0] >= X.shape[1]:
            Q, R = np.linalg.qr(X)
            X, Y = R, Q.T @ Y
        out += [X, Y]
    return tuple(out)


EXTRA = "-best-r"  # version suffix of the peers outside the four


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


# ------------------------------------------- hyper-cleaning: the whole Fashion-MNIST run
# Gauss-Seidel PBGD with the exact v block (the `cleaning` experiment): at psi = sigmoid(s u),
#   W = argmin_W f + gam g  : (Xv^T Xv + gam (Xt^T Psi Xt + lam I)) W = Xv^T Yv + gam Xt^T Psi Yt
#   w = argmin_W g          : (Xt^T Psi Xt + lam I) w = Xt^T Psi Yt
#   u <- clip(u - a gam s psi (1 - psi) (l_i(W) - l_i(w)), -bound, bound)
# "naive" writes Xt^T diag(psi) Xt as it reads (an N x N diagonal); "best" scales the rows and
# reuses the constant validation Gram. Both solve with LU (numpy.linalg.solve / jnp.linalg.solve).
def run_consts(xp, d):
    Xt, Yt, Xv, Yv = d
    return Xv.T @ Xv, Xv.T @ Yv


def run_step_naive(xp, d, k, u, c):
    Xt, Yt, Xv, Yv = d
    s, lam, gam, a, b = c["u_scale"], c["lambda"], c["gamma"], c["u_step"], c["bound"]
    m = Xt.shape[1]
    psi = 1.0 / (1.0 + xp.exp(-s * u))
    P = xp.diag(psi)
    A = Xt.T @ P @ Xt + lam * xp.eye(m)
    Bw = Xt.T @ P @ Yt
    v = xp.linalg.solve(Xv.T @ Xv + gam * A, Xv.T @ Yv + gam * Bw)
    w = xp.linalg.solve(A, Bw)
    lv = 0.5 * xp.sum((Xt @ v - Yt) ** 2, axis=1)
    lw = 0.5 * xp.sum((Xt @ w - Yt) ** 2, axis=1)
    du = gam * s * psi * (1.0 - psi) * (lv - lw)
    return xp.clip(u - a * du, -b, b), v


def run_step_best(xp, d, k, u, c):
    Xt, Yt, Xv, Yv = d
    Gv, Bv = k
    s, lam, gam, a, b = c["u_scale"], c["lambda"], c["gamma"], c["u_step"], c["bound"]
    n, m = Yt.shape[1], Xt.shape[1]
    psi = 1.0 / (1.0 + xp.exp(-s * u))
    Xs = Xt * psi[:, None]
    A = Xs.T @ Xt + lam * xp.eye(m)
    Bw = Xs.T @ Yt
    v = xp.linalg.solve(Gv + gam * A, Bv + gam * Bw)
    w = xp.linalg.solve(A, Bw)
    R = Xt @ xp.hstack([v, w]) - xp.hstack([Yt, Yt])
    lv = 0.5 * xp.sum(R[:, :n] ** 2, axis=1)
    lw = 0.5 * xp.sum(R[:, n:] ** 2, axis=1)
    du = gam * s * psi * (1.0 - psi) * (lv - lw)
    return xp.clip(u - a * du, -b, b), v


RUN_STEPS = {"naive": run_step_naive, "best": run_step_best}
# Whole runs are timed as the fastest of this many (ours too: `bilevel_bench::RUN_REPS`), which takes
# most of the other work on the machine out of the comparison.
RUN_REPS = 3


def run_cleaning_run(case_dir, c, jax_mod):
    load = lambda name: np.load(case_dir / f"{name}.npy")
    n = int(load("labels_trn").max()) + 1
    d = (load("x_trn"), one_hot(np, load("labels_trn")[:, 0], n),
         load("x_val"), one_hot(np, load("labels_val")[:, 0], n))
    xte, lte = load("x_test"), load("labels_test")[:, 0]
    u_ours, v_ours, acc_ours = load("u")[:, 0], load("v"), load("acc")[:, 0]
    out = {"case": c["name"], "kind": "cleaning-run", "ours_s": c["seconds"],
           "trip_ns": placement(c), "ours_to_target_s": c["seconds_to_target"], "target_iter": c["target_iter"],
           "iters": c["iters"], "final_test_acc": c["final_test_acc"], "peers": {}}
    for lib in ("numpy", "jax"):
        if lib == "jax" and jax_mod is None:
            continue
        for version, step in RUN_STEPS.items():
            key = f"{lib}-{version}"
            compile_s = None
            if lib == "numpy":
                dd = d
                t = time.perf_counter()
                k = run_consts(np, dd)
                const_s = time.perf_counter() - t
                call = lambda u, step=step, dd=dd, k=k: step(np, dd, k, u, c)
            else:
                jax, jnp = jax_mod
                dd = tuple(jnp.asarray(x) for x in d)
                kj = jax.jit(lambda dd: run_consts(jnp, dd))
                kj.lower(dd).compile()
                t = time.perf_counter()
                k = jax.block_until_ready(kj(dd))
                const_s = time.perf_counter() - t
                jit = jax.jit(lambda dd, k, u, step=step: step(jnp, dd, k, u, c))
                t = time.perf_counter()
                jit.lower(dd, k, jnp.zeros(d[0].shape[0])).compile()
                compile_s = time.perf_counter() - t
                call = lambda u, jit=jit, dd=dd, k=k: jax.block_until_ready(jit(dd, k, u))
            # The fastest of RUN_REPS runs (as for ours); the naive versions are far off and
            # take minutes, so they run once.
            best = None
            for _ in range(RUN_REPS if version == "best" else 1):
                u = np.zeros(d[0].shape[0]) if lib == "numpy" else jax_mod[1].zeros(d[0].shape[0])
                total, times, accs = const_s, [], []
                for _ in range(c["iters"]):
                    t = time.perf_counter()
                    u, v = call(u)
                    total += time.perf_counter() - t
                    times.append(total)
                    accs.append(float(np.mean(np.argmax(xte @ np.asarray(v), axis=1) == lte)))
                if best is None or total < best[0]:
                    best = (total, times, accs, u, v)
            total, times, accs, u, v = best
            errs = [rel_err(u, u_ours), rel_err(v, v_ours)]
            ok = max(errs) <= AGREE_RTOL and accs == list(acc_ours)
            ti = c["target_iter"] - 1
            rec = {"max_rel_err": max(errs), "agrees": ok, "compile_s": compile_s,
                   "seconds": total, "seconds_to_target": times[ti] if ok else None}
            if not ok:
                rec["seconds"] = None
            out["peers"][key] = rec
            print(f"  {c['name']:>20} {key:<12} err {max(errs):.1e} "
                  + (f"run {total:8.2f} s, to target {times[ti]:8.2f} s" if ok
                     else "DISAGREES: not timed")
                  + (f"  (compile {compile_s:.2f} s)" if compile_s is not None else ""),
                  file=sys.stderr, flush=True)
    return out


# ------------------------------- representation learning: whole runs to a fixed tolerance
# Our run stopped at the first iteration K whose relative distance to the penalty optimum,
# ||P W1 W2 - Z*|| / ||Z*|| (P the projector onto the data's row space), is <= tol; each peer
# runs the same K iterations of the same algorithm from the same start, must end within
# AGREE_RTOL of our iterates and within tol, and is timed without checks, as ours is. Only the
# best-order versions run (the naive ones are 10-100x slower per iteration, see the iteration
# table). JAX runs the K iterations inside one jit-compiled lax.fori_loop, as a JAX user would.
def compiled_loop(jax_mod, c):
    """JAX's best order as one jit-compiled function (data, state, k) -> state running k
    iterations in a lax.fori_loop (k static: one compilation per k)."""
    jax, jnp = jax_mod
    loop = lambda dd, s, k: jax.lax.fori_loop(0, k, lambda i, s: best_step(jnp, dd, *s, c), s)
    return jax.jit(loop, static_argnums=2)


def run_replearn_run(case_dir, c, jax_mod):
    load = lambda name: np.load(case_dir / f"{name}.npy")
    d = tuple(load(k) for k in ("x_trn", "y_trn", "x_val", "y_val"))
    s0 = tuple(load(k) for k in ("w1_0", "w2_0", "w_0"))
    ours = tuple(load(k) for k in ("w1_k", "w2_k", "w_k"))
    zs, proj = load("z_star"), load("row_proj")
    K = c["iters"]
    out = {"case": c["name"], "kind": "replearn-run", "ours_s": c["seconds"],
           "ours_checked_s": c["seconds_checked"], "iters": K, "tol": c["tol"],
           "floor_s": c["floor"], "work_floor_s": c["work_floor"], "trip_ns": placement(c),
           "peers": {}}
    versions = {"best": d}
    if any(x.shape[0] >= x.shape[1] for x in (d[0], d[2])):
        versions["best-r"] = r_form(d)
    for lib in ("numpy", "jax"):
        if lib == "jax" and jax_mod is None:
            continue
        for version, dv in versions.items():
            key = f"{lib}-{version}"
            compile_s = None
            if lib == "numpy":
                def call(dv=dv):
                    s = s0
                    for _ in range(K):
                        s = best_step(np, dv, *s, c)
                    return s
            else:
                jax, jnp = jax_mod
                dd = tuple(jnp.asarray(x) for x in dv)
                jit = compiled_loop(jax_mod, c)
                t = time.perf_counter()
                jit.lower(dd, s0, K).compile()
                compile_s = time.perf_counter() - t
                call = lambda jit=jit, dd=dd: jax.block_until_ready(jit(dd, s0, K))
            best = None
            for _ in range(RUN_REPS):
                t = time.perf_counter()
                s = call()
                secs = time.perf_counter() - t
                best = secs if best is None else min(best, secs)
            errs = [rel_err(a, b) for a, b in zip(s, ours)]
            W1, W2 = np.asarray(s[0]), np.asarray(s[1])
            dist = float(np.linalg.norm(proj @ (W1 @ W2) - zs) / np.linalg.norm(zs))
            ok = max(errs) <= AGREE_RTOL and dist <= c["tol"] * (1 + 1e-6)
            rec = {"max_rel_err": max(errs), "dist": dist, "agrees": ok,
                   "compile_s": compile_s, "seconds": best if ok else None}
            out["peers"][key] = rec
            print(f"  {c['name']:>20} {key:<12} err {max(errs):.1e} dist {dist:.2e} "
                  + (f"run {best:8.3f} s" if ok else "DISAGREES: not timed")
                  + (f"  (compile {compile_s:.2f} s)" if compile_s is not None else ""),
                  file=sys.stderr, flush=True)
    return out


def placement(c):
    """The cores' cache-line round trip (ns) measured just before our timing: ~110 when the
    host runs the two vCPUs on cores sharing a cache, ~400 when on different core complexes
    (`bilevel_bench::core_round_trip_ns`); the threaded kernels, ours and the peers', are slower then."""
    return c["rates"]["round_trip_ns"]


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-300))


TIMING_ROUNDS = 3  # as ours: `bilevel_bench::TIMING_ROUNDS`


def timed(fn, state, budget):
    """Seconds of one call of fn(state) -> state: the smallest of TIMING_ROUNDS medians, each
    over repetitions filling a share of ~budget s (as ours, `bilevel_bench::time_budget`)."""
    t = time.perf_counter()
    state = fn(state)
    probe = time.perf_counter() - t
    reps = int(min(max(budget / TIMING_ROUNDS / max(probe, 1e-7), 11), 4001))
    best = None
    for _ in range(TIMING_ROUNDS):
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            state = fn(state)
            ts.append(time.perf_counter() - t)
        ts.sort()
        best = ts[len(ts) // 2] if best is None else min(best, ts[len(ts) // 2])
    return best, reps


def run_case(case_dir, jax_mod, budget):
    c = json.loads((case_dir / "case.json").read_text())
    load = lambda name: np.load(case_dir / f"{name}.npy")
    if c["kind"] == "cleaning-run":
        return run_cleaning_run(case_dir, c, jax_mod)
    if c["kind"] == "replearn-run":
        return run_replearn_run(case_dir, c, jax_mod)
    if c["kind"] == "cleaning-softmax":
        return run_softmax_case(case_dir, c, jax_mod, placement)
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
        versions, iters = dict(STEPS), c["check_iters"]
        if any(x.shape[0] >= x.shape[1] for x in (d[0], d[2])):
            versions["best-r"] = best_step
    # Replearn steps map a state to the next; a cleaning evaluation always starts from s0.
    chain = c["kind"] != "cleaning"
    out = {"case": c["name"], "ours_s": c["seconds"], "floor_s": c["floor"],
           "work_floor_s": c["work_floor"], "trip_ns": placement(c), "peers": {}}
    for lib in ("numpy", "jax"):
        if lib == "jax" and jax_mod is None:
            continue
        for version, step in versions.items():
            key = f"{lib}-{version}"
            compile_s = None
            dv = r_form(d) if version == "best-r" else d
            if lib == "numpy":
                call = lambda s, step=step, dv=dv: step(np, dv, *s, c)
            else:
                jax, jnp = jax_mod
                dd = tuple(jnp.asarray(x) for x in dv)
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
    if chain and jax_mod is not None:
        # JAX's best order again, LOOP iterations inside one compiled lax.fori_loop: the
        # per-call dispatch (tens of microseconds) is then paid once per LOOP iterations, as
        # in a JAX user's training loop. Timed per iteration; the agreement check runs the
        # check iterations as one loop.
        jax, jnp = jax_mod
        for version in [v for v in ("best", "best-r") if v in versions]:
            key = f"jax-{version}{LOOP_SUFFIX}"
            dd = tuple(jnp.asarray(x) for x in (r_form(d) if version == "best-r" else d))
            jit = compiled_loop(jax_mod, c)
            t = time.perf_counter()
            jit.lower(dd, s0, LOOP).compile()
            compile_s = time.perf_counter() - t
            s = jax.block_until_ready(jit(dd, s0, iters))
            errs = [rel_err(a, b) for a, b in zip(s, ours_k)]
            ok = max(errs) <= AGREE_RTOL
            rec = {"max_rel_err": max(errs), "agrees": ok, "compile_s": compile_s}
            if ok:
                call = lambda s, jit=jit, dd=dd: jax.block_until_ready(jit(dd, s, LOOP))
                secs, rec["reps"] = timed(call, s, budget)
                rec["seconds"] = secs / LOOP
            out["peers"][key] = rec
            print(f"  {c['name']:>20} {key:<12} err {max(errs):.1e} "
                  + (f"{rec['seconds'] * 1e3:9.3f} ms" if ok else "DISAGREES: not timed")
                  + f"  (compile {compile_s:.2f} s)", file=sys.stderr, flush=True)
    return out


LOOP = 100  # iterations per call of the compiled-loop JAX versions
LOOP_SUFFIX = "-loop"


def table(results):
    head = ("| case | ours (ms) | NumPy naive | NumPy best | JAX naive | JAX best "
            "| JAX best, compiled loop | fastest peer / ours | floor (ms) | ours / floor "
            "| floor of our work (ms) | ours / that | NumPy best over R | JAX best over R "
            "| JAX best over R, compiled loop | fastest over R / ours | our core round trip (ns) "
            "| JAX compile (s) |")
    lines = [head, "|---|" + "---:|" * 16 + "---|"]
    for r in results:
        if r.get("kind") in ("cleaning-run", "replearn-run", "cleaning-softmax"):
            continue
        p = r["peers"]
        ms = lambda k: (f"{p[k]['seconds'] * 1e3:.3f}" if k in p and p[k]["agrees"]
                        else ("disagrees" if k in p else "—"))
        # The four versions; the versions over R are shown apart.
        is_r = lambda k: k.removesuffix(LOOP_SUFFIX).endswith(EXTRA)
        timed_peers = [v["seconds"] for k, v in p.items() if v["agrees"] and not is_r(k)]
        fastest = min(timed_peers) if timed_peers else float("nan")
        over_r = [v["seconds"] for k, v in p.items() if v["agrees"] and is_r(k)]
        fastest_r = f"{min(over_r) / r['ours_s']:.2f}" if over_r else "—"
        work = r["work_floor_s"]
        comp = ", ".join(f"{p[k]['compile_s']:.2f}" for k in ("jax-naive", "jax-best") if k in p)
        lines.append(
            f"| {r['case']} | {r['ours_s'] * 1e3:.3f} | {ms('numpy-naive')} | {ms('numpy-best')} "
            f"| {ms('jax-naive')} | {ms('jax-best')} | {ms('jax-best' + LOOP_SUFFIX)} "
            f"| {fastest / r['ours_s']:.2f} "
            f"| {r['floor_s'] * 1e3:.3f} | {r['ours_s'] / r['floor_s']:.2f} "
            f"| {work * 1e3:.3f} | {r['ours_s'] / work:.2f} | {ms('numpy-best-r')} "
            f"| {ms('jax-best-r')} | {ms('jax-best-r' + LOOP_SUFFIX)} | {fastest_r} "
            f"| {r['trip_ns']:.0f} | {comp} |")
    rl = [r for r in results if r.get("kind") == "replearn-run"]
    if rl:
        lines += ["", "| run to tolerance | iterations | tol | ours (s) | NumPy best | JAX best "
                  "| NumPy best over R | JAX best over R | fastest peer / ours "
                  "| fastest over R / ours | ours / floor | ours / floor of our work "
                  "| ours, checking every iteration (s) | our core round trip (ns) | JAX compile (s) |",
                  "|---|" + "---:|" * 13 + "---|"]
    for r in rl:
        p = r["peers"]
        s = lambda k: (f"{p[k]['seconds']:.3f}" if k in p and p[k]["agrees"]
                       else ("disagrees" if k in p else "—"))
        four = [v["seconds"] for k, v in p.items() if v["agrees"] and not k.endswith(EXTRA)]
        over_r = [v["seconds"] for k, v in p.items() if v["agrees"] and k.endswith(EXTRA)]
        ratio = lambda xs: f"{min(xs) / r['ours_s']:.2f}" if xs else "—"
        comp = ", ".join(f"{p[k]['compile_s']:.2f}" for k in ("jax-best", "jax-best-r") if k in p)
        lines.append(
            f"| {r['case']} | {r['iters']} | {r['tol']:.0e} | {r['ours_s']:.3f} "
            f"| {s('numpy-best')} | {s('jax-best')} | {s('numpy-best-r')} | {s('jax-best-r')} "
            f"| {ratio(four)} | {ratio(over_r)} | {r['ours_s'] / r['floor_s']:.2f} "
            f"| {r['ours_s'] / r['work_floor_s']:.2f} | {r['ours_checked_s']:.3f} "
            f"| {r['trip_ns']:.0f} | {comp} |")
    runs = [r for r in results if r.get("kind") == "cleaning-run"]
    if runs:
        lines += ["", "| whole run | iterations | ours (s) | NumPy naive | NumPy best | JAX naive "
                  "| JAX best | fastest peer / ours | to target: ours (s) | fastest peer (s) "
                  "| ratio | our core round trip (ns) | JAX compile (s) |",
                  "|---|" + "---:|" * 11 + "---|"]
    for r in runs:
        p = r["peers"]
        ok = {k: v for k, v in p.items() if v["agrees"]}
        s = lambda k: (f"{p[k]['seconds']:.2f}" if k in ok else ("disagrees" if k in p else "—"))
        fastest = min((v["seconds"] for v in ok.values()), default=float("nan"))
        fastest_t = min((v["seconds_to_target"] for v in ok.values()), default=float("nan"))
        comp = ", ".join(f"{p[k]['compile_s']:.2f}" for k in ("jax-naive", "jax-best") if k in p)
        lines.append(
            f"| {r['case']} | {r['iters']} | {r['ours_s']:.2f} | {s('numpy-naive')} "
            f"| {s('numpy-best')} | {s('jax-naive')} | {s('jax-best')} "
            f"| {fastest / r['ours_s']:.2f} | {r['ours_to_target_s']:.2f} (iteration "
            f"{r['target_iter']}) | {fastest_t:.2f} | {fastest_t / r['ours_to_target_s']:.2f} "
            f"| {r['trip_ns']:.0f} | {comp} |")
    lines += softmax_table(results)
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
    cases = ours["cases"] + ours.get("runs", [])
    results = [run_case(root / c["name"], jax_mod, budget) for c in cases]
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
    bad = [(r["case"], k) for r in results for k, v in r["peers"].items()
           if not v["agrees"] or v.get("run_agrees") is False]
    if bad:
        print(f"peers disagreeing with ours (not timed): {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

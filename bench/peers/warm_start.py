"""Warm starts of the exact hyper-cleaning solves, simulated in NumPy on the exported run.

    python bench/peers/warm_start.py CASE_DIR [START:REFRESH ...]

CASE_DIR is the `cleaning-fmnist-run` directory that `bilevel bench --cleaning` exports. The
script replays the u path of that run (NumPy best step, the same algorithm), then solves both
systems at every u the way `Cleaning::solve_exact` does (column-wise PCG to a relative residual
of 1e-12, preconditioned by the inverses at the last refresh, refresh when the last solve took
more than REFRESH iterations) from each warm START and prints refreshes, CG iterations and the
median initial residual. START is `prev` (the last solution), `lin` (the line through the last
two, the earlier default) or `secK` (least-squares secant fit to the last K steps, the default
with K = 5). A third field `:block` runs block PCG instead of column-wise PCG. Default
arguments: prev:5 lin:5 sec2:5 sec5:5 sec5:2 sec5:3 sec8:3 lin:5:block.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import one_hot, run_consts, run_step_best  # noqa: E402

TOL, MAX_IT = 1e-12, 30


def load(case):
    c = json.loads((case / "case.json").read_text())
    ld = lambda name: np.load(case / f"{name}.npy")
    n = int(ld("labels_trn").max()) + 1
    d = (ld("x_trn"), one_hot(np, ld("labels_trn")[:, 0], n),
         ld("x_val"), one_hot(np, ld("labels_val")[:, 0], n))
    return c, d


def u_path(c, d):
    k = run_consts(np, d)
    u = np.zeros(d[0].shape[0])
    us = [u]
    for _ in range(c["iters"]):
        u, _ = run_step_best(np, d, k, u, c)
        us.append(u)
    return us


def pcg(a, b, x, minv, scale):
    r = b - a @ x
    if np.all(np.linalg.norm(r, axis=0) <= TOL * scale):
        return x, 0
    z = minv @ r
    p, rz = z.copy(), np.sum(r * z, 0)
    for it in range(1, MAX_IT + 1):
        q = a @ p
        pq = np.sum(p * q, 0)
        al = np.where(pq > 0, rz / np.where(pq > 0, pq, 1), 0)
        x, r = x + p * al, r - q * al
        if np.all(np.linalg.norm(r, axis=0) <= TOL * scale):
            return x, it
        z = minv @ r
        rzn = np.sum(r * z, 0)
        p = z + p * np.where(rz > 0, rzn / np.where(rz > 0, rz, 1), 0)
        rz = rzn
    return x, None


def orth(w, drop=1e-10):
    nrm = np.linalg.norm(w, axis=0)
    w = w[:, nrm > 0] / nrm[nrm > 0]
    q, sv, _ = np.linalg.svd(w, full_matrices=False)
    return q[:, sv > drop * sv[0]] if len(sv) else q


def block_pcg(a, b, x, minv, scale):
    """Breakdown-free block PCG (one Krylov block for all columns), for comparison."""
    r = b - a @ x
    if np.all(np.linalg.norm(r, axis=0) <= TOL * scale):
        return x, 0
    p = orth(minv @ r)
    for it in range(1, MAX_IT + 1):
        q = a @ p
        pq = p.T @ q
        al = np.linalg.solve(pq, p.T @ r)
        x, r = x + p @ al, r - q @ al
        if np.all(np.linalg.norm(r, axis=0) <= TOL * scale):
            return x, it
        z = minv @ r
        p = orth(z - p @ np.linalg.solve(pq, q.T @ z))
    return x, None


def start(path, u, mode, shape):
    if not path:
        return np.zeros(shape)
    if mode == "prev" or len(path) < 2:
        return path[-1][1].copy()
    if mode == "lin":
        (u2, x2), (u1, x1) = path[-2:]
        dd = u1 - u2
        t = np.clip((u - u1) @ dd / (dd @ dd), 0, 2) if dd @ dd > 0 else 0
        return x1 + t * (x1 - x2)
    hist = path[-(int(mode[3:]) + 1):]
    du = np.array([hist[i + 1][0] - hist[i][0] for i in range(len(hist) - 1)]).T
    coef, *_ = np.linalg.lstsq(du, u - hist[-1][0], rcond=1e-10)
    return hist[-1][1] + sum(ci * (hist[i + 1][1] - hist[i][1]) for i, ci in enumerate(coef))


def simulate(c, d, us, mode, refresh_iters, solve=pcg):
    xt, yt, xv, yv = d
    gv, bv = run_consts(np, d)
    s, lam, gam = c["u_scale"], c["lambda"], c["gamma"]
    m, n = xt.shape[1], yt.shape[1]
    fac, path, iters, refreshes, r0s = None, [], 0, 0, []
    for u in us[:-1]:
        psi = 1 / (1 + np.exp(-s * u))
        a = (xt * psi[:, None]).T @ xt + lam * np.eye(m)
        bw = (xt * psi[:, None]).T @ yt
        av, bvv = gv + gam * a, bv + gam * bw
        x = start(path, u, mode, (m, 2 * n))
        it = None
        if fac is not None and fac["last"] <= refresh_iters:
            r0 = np.hstack([bw - a @ x[:, :n], bvv - av @ x[:, n:]])
            r0s.append(np.max(np.linalg.norm(r0, axis=0) / fac["scale"]))
            xw, iw = solve(a, bw, x[:, :n], fac["g"], fac["scale"][:n])
            xvv, iv = solve(av, bvv, x[:, n:], fac["v"], fac["scale"][n:])
            if iw is not None and iv is not None:
                it = max(iw, iv)
                x, fac["last"] = np.hstack([xw, xvv]), it
                iters += it
        if it is None:
            refreshes += 1
            x = np.hstack([np.linalg.solve(a, bw), np.linalg.solve(av, bvv)])
            scale = np.concatenate([np.linalg.norm(bw, axis=0), np.linalg.norm(bvv, axis=0)])
            fac = {"g": np.linalg.inv(a), "v": np.linalg.inv(av), "last": 0, "scale": scale}
        path = (path + [(u, x)])[-9:]
    solves = len(us) - 1 - refreshes
    return refreshes, solves, iters, float(np.median(r0s)) if r0s else float("nan")


def main():
    case = Path(sys.argv[1])
    runs = sys.argv[2:] or ["prev:5", "lin:5", "sec2:5", "sec5:5", "sec5:2", "sec5:3", "sec8:3",
                            "lin:5:block"]
    c, d = load(case)
    us = u_path(c, d)
    print("| start | refresh after | CG | refreshes | CG solves | CG iterations | per solve | median initial residual |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for run in runs:
        mode, ri, *kind = run.split(":")
        solve = block_pcg if kind == ["block"] else pcg
        r, s, it, r0 = simulate(c, d, us, mode, int(ri), solve)
        name = "block" if solve is block_pcg else "columns"
        print(f"| {mode} | {ri} | {name} | {r} | {s} | {it} | {it / max(s, 1):.2f} | {r0:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()

"""NumPy prototype of least-squares hyper-cleaning (Gauss-Seidel PBGD, exact v block), used to
design the data-driven defaults (docs/cleaning.md, "Defaults and how each is chosen").

The iteration is a faithful copy of the library's: psi = sigmoid(s u), g = 1/2 sum psi_i
||W^T x_i - y_i||^2 + lam/2 ||W||^2, f = 1/2 ||X_val W - Y_val||^2, W = argmin f + gamma g,
w* = argmin g, u <- clip(u - alpha * gamma s psi(1-psi) (l_i(W) - l_i(w*)), -B, B)."""
import gzip, sys, time, json
import numpy as np

FMNIST = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def corrupt(y, k, p, rng):
    n = len(y)
    nc = int(round(p * n))
    mask = np.zeros(n, bool)
    mask[rng.choice(n, nc, replace=False)] = True
    y2 = y.copy()
    shift = rng.integers(1, k, size=nc)  # uniform wrong class
    y2[mask] = (y[mask] + shift) % k
    return y2, mask


def dataset(name, seed, p, n_fm=(5000, 5000, 10000)):
    rng = np.random.default_rng(seed)
    if name == "fmnist":
        X = idx(f"{FMNIST}/train-images-idx3-ubyte.gz").reshape(60000, -1) / 255.0
        y = idx(f"{FMNIST}/train-labels-idx1-ubyte.gz").astype(int)
        Xt = idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz").reshape(10000, -1) / 255.0
        yt = idx(f"{FMNIST}/t10k-labels-idx1-ubyte.gz").astype(int)
        nt, nv, ns = n_fm
        perm = rng.permutation(60000)[: nt + nv]
        tr, va = perm[:nt], perm[nt:]
        Xtr, ytr, Xva, yva, Xte, yte = X[tr], y[tr], X[va], y[va], Xt[:ns], yt[:ns]
    elif name.startswith("clusters"):
        m, k, sep = 20, 5, 4.0
        mu = sep * rng.standard_normal((k, m)) / np.sqrt(m)
        def draw(n):
            yy = rng.integers(0, k, n)
            return mu[yy] + rng.standard_normal((n, m)), yy
        (Xtr, ytr), (Xva, yva), (Xte, yte) = draw(500), draw(200), draw(2000)
    else:
        from sklearn import datasets
        if name.startswith("covtype"):
            d = datasets.fetch_covtype()
        else:
            d = getattr(datasets, "load_" + name)()
        X, y = d.data.astype(float), d.target.astype(int)
        perm = rng.permutation(len(y))
        n = len(y)
        a, b = n // 2, (3 * n) // 4
        tr, va, te = perm[:a], perm[a:b], perm[b:]
        Xtr, ytr, Xva, yva, Xte, yte = X[tr], y[tr], X[va], y[va], X[te], y[te]
    if name == "clusters_scaled":  # features in mixed units: column j times 10^U(-2, 2)
        D = 10.0 ** rng.uniform(-2, 2, Xtr.shape[1])
        Xtr, Xva, Xte = Xtr * D, Xva * D, Xte * D
    if name == "clusters_offset":  # features far from 0 (no intercept in the model)
        o = 10.0 * rng.standard_normal(Xtr.shape[1])
        Xtr, Xva, Xte = Xtr + o, Xva + o, Xte + o
    k = int(max(ytr.max(), yva.max(), yte.max()) + 1)
    ytr_obs, mask = corrupt(ytr, k, p, rng)
    return dict(Xtr=Xtr, ytr=ytr_obs, Xva=Xva, yva=yva, Xte=Xte, yte=yte, k=k, mask=mask)


def onehot(y, k):
    Y = np.zeros((len(y), k))
    Y[np.arange(len(y)), y] = 1.0
    return Y


def ridge(X, Y, w, lam):
    G = (X * w[:, None]).T @ X
    G[np.diag_indices_from(G)] += lam
    return np.linalg.solve(G, (X * w[:, None]).T @ Y)


def acc(X, y, W):
    return float(np.mean(np.argmax(X @ W, 1) == y))


def f1(keep, mask):
    flagged = ~keep
    tp = np.sum(flagged & mask)
    return 2 * tp / max(flagged.sum() + mask.sum(), 1)


class Cleaner:
    def __init__(self, d, lam, gamma, s=1.0, B=10.0):
        self.d, self.lam, self.gamma, self.s, self.B = d, lam, gamma, s, B
        self.X, self.Xv = d["Xtr"], d["Xva"]
        self.Y, self.Yv = onehot(d["ytr"], d["k"]), onehot(d["yva"], d["k"])
        self.Gv = self.Xv.T @ self.Xv
        self.bv = self.Xv.T @ self.Yv
        self.m = self.X.shape[1]

    def grad(self, u):
        """(grad of phi at u, W, w*, phi)."""
        s, g, lam = self.s, self.gamma, self.lam
        psi = 1 / (1 + np.exp(-s * u))
        Xp = self.X * psi[:, None]
        G = Xp.T @ self.X
        b = Xp.T @ self.Y
        I = np.eye(self.m)
        wstar = np.linalg.solve(G + lam * I, b)
        W = np.linalg.solve(self.Gv + g * (G + lam * I), self.bv + g * b)
        lW = 0.5 * np.sum((self.X @ W - self.Y) ** 2, 1)
        lw = 0.5 * np.sum((self.X @ wstar - self.Y) ** 2, 1)
        f = 0.5 * np.sum((self.Xv @ W - self.Yv) ** 2)
        gv = psi @ lW + lam / 2 * np.sum(W * W)
        gs = psi @ lw + lam / 2 * np.sum(wstar * wstar)
        phi = f + g * (gv - gs)
        return g * s * psi * (1 - psi) * (lW - lw), W, wstar, phi, f


def kept_eval(d, keep, lam, which=("va", "te")):
    W = ridge(d["Xtr"], onehot(d["ytr"], d["k"]), keep.astype(float), lam)
    return {w: acc(d["X" + w], d["y" + w], W) for w in which}, W

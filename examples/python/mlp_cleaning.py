"""Hyper-cleaning with a small nonlinear model, defined in NumPy and solved by PBGD in Rust.

The model is a one-hidden-layer tanh network with a softmax output; the upper-level variable
u holds one logit per training sample (weight ψ_i = sigmoid(u_i)), the lower level trains the
network on the weighted training loss, the upper level is the loss on a small clean validation
set. f and g return (value, grad_u, grad_v), so a JAX or PyTorch model fits the same way
(`jax.value_and_grad(loss, argnums=(0, 1))`).

    python examples/python/mlp_cleaning.py
"""

import numpy as np

import bilevel

rng = np.random.default_rng(0)
H, K, LAM = 8, 2, 1e-3


def rings(n):
    """Two concentric rings: not linearly separable."""
    lab = rng.integers(0, K, n)
    r = 1.0 + 1.5 * lab + 0.25 * rng.normal(size=n)
    t = rng.uniform(0, 2 * np.pi, n)
    return np.c_[r * np.cos(t), r * np.sin(t)], lab


X, y_clean = rings(300)
X_val, y_val = rings(60)
X_test, y_test = rings(1000)
flipped = rng.random(300) < 0.3
y = np.where(flipped, 1 - y_clean, y_clean)
M = X.shape[1]
SIZES = [(M, H), (H,), (H, K), (K,)]
DV = sum(int(np.prod(s)) for s in SIZES)


def unpack(v):
    out, i = [], 0
    for s in SIZES:
        k = int(np.prod(s))
        out.append(v[i : i + k].reshape(s))
        i += k
    return out


def losses_and_grad(v, X, lab, c):
    """Per-sample cross-entropy losses and the gradient of Σ c_i ℓ_i in v."""
    W1, b1, W2, b2 = unpack(v)
    A = np.tanh(X @ W1 + b1)
    Z = A @ W2 + b2
    Z -= Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(axis=1, keepdims=True)
    n = len(lab)
    ell = -np.log(P[np.arange(n), lab])
    dZ = P
    dZ[np.arange(n), lab] -= 1.0
    dZ *= c[:, None]
    dA = (dZ @ W2.T) * (1.0 - A * A)
    grad = np.concatenate([(X.T @ dA).ravel(), dA.sum(0), (A.T @ dZ).ravel(), dZ.sum(0)])
    return ell, grad


def sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def g(u, v):
    """Weighted training loss (mean) plus a small ridge."""
    psi = sigmoid(u)
    ell, gv = losses_and_grad(v, X, y, psi / len(y))
    val = psi @ ell / len(y) + 0.5 * LAM * v @ v
    return val, psi * (1 - psi) * ell / len(y), gv + LAM * v


def f(u, v):
    """Validation loss (mean); independent of u."""
    ell, gv = losses_and_grad(v, X_val, y_val, np.full(len(y_val), 1.0 / len(y_val)))
    return ell.mean(), np.zeros_like(u), gv


def accuracy(v, X, lab):
    W1, b1, W2, b2 = unpack(v)
    return np.mean(np.argmax(np.tanh(X @ W1 + b1) @ W2 + b2, axis=1) == lab)


if __name__ == "__main__":
    problem = bilevel.Problem.from_functions(len(y), DV, f, g, name="mlp-cleaning")
    v0 = 0.5 * rng.normal(size=DV)
    res = bilevel.run(
        problem,
        bilevel.solvers.Pbgd(gamma=10.0, alpha=0.5, inner="gd", inner_steps=20, inner_beta=1.0),
        start=(np.zeros(len(y)), v0),
        max_iter=1500,
        record_every=100,
    )
    psi = sigmoid(res.u)
    flagged = psi < 0.5
    print(res)
    print(f"f (validation loss) {res.last['f']:.4f}, lower-level gap {res.last['ll_gap']:.2e}")
    print(
        f"flagged {flagged.sum()} of {len(y)} samples; {np.sum(flagged & flipped)} of them "
        f"among the {flipped.sum()} flipped labels"
    )
    print(f"test accuracy of the network at the end: {accuracy(res.v, X_test, y_test):.3f}")
    print(f"Python calls (f, g): {problem.calls}")

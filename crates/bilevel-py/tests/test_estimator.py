"""bilevel.HyperCleaner: scikit-learn conventions and cleaning on flipped labels."""

import numpy as np
import pytest

import bilevel
from bilevel import HyperCleaner


def clusters(seed=0, n=300, nv=80, m=6, k=3, p=0.4):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(k, m))
    def draw(n):
        lab = rng.integers(0, k, n)
        return means[lab] + rng.normal(size=(n, m)), lab
    X, y = draw(n)
    Xv, yv = draw(nv)
    Xt, yt = draw(500)
    flip = rng.random(n) < p
    y_noisy = np.where(flip, (y + rng.integers(1, k, n)) % k, y)
    return X, y_noisy, Xv, yv, Xt, yt, flip


def test_fit_flags_flipped_labels():
    X, y, Xv, yv, Xt, yt, flip = clusters()
    names = np.array(["ant", "bee", "cow"])
    hc = HyperCleaner(u_scale=30.0).fit(X, names[y], Xv, names[yv])
    assert list(hc.classes_) == ["ant", "bee", "cow"]
    assert hc.sample_weight_.shape == (300,) and hc.flagged_.dtype == bool
    assert hc.coef_.shape == (3, 6) and hc.n_features_in_ == 6
    # Flagged samples are mostly the flipped ones.
    precision = (hc.flagged_ & flip).sum() / max(hc.flagged_.sum(), 1)
    assert precision > 0.6, precision
    assert hc.score(Xt, names[yt]) > 0.8
    assert set(hc.predict(Xt[:5])) <= set(names)
    assert hc.decision_function(Xt[:5]).shape == (5, 3)
    assert hc.result_.status in ("max-iterations", "converged")


def test_params_conventions():
    hc = HyperCleaner(lambda_=0.5, max_iter=10)
    p = hc.get_params()
    assert p["lambda_"] == 0.5 and p["max_iter"] == 10
    assert hc.set_params(max_iter=20) is hc and hc.max_iter == 20
    with pytest.raises(ValueError, match="Invalid parameter"):
        hc.set_params(gamma=3)
    assert "lambda_=0.5" in repr(hc)


def test_errors():
    X, y, Xv, yv, *_ = clusters()
    with pytest.raises(ValueError, match=r"`X_val` has 3 rows|`y_val` has"):
        HyperCleaner(max_iter=5).fit(X, y, Xv[:3], yv)
    with pytest.raises(ValueError, match="at least 2 are needed"):
        HyperCleaner(max_iter=5).fit(X, np.zeros(300, int), Xv, np.zeros(80, int))
    with pytest.raises(ValueError, match=r"\[problem\] `lambda` = -1"):
        HyperCleaner(lambda_=-1.0, max_iter=5).fit(X, y, Xv, yv)
    hc = HyperCleaner(max_iter=5).fit(X, y, Xv, yv)
    with pytest.raises(ValueError, match="fitted with 6"):
        hc.predict(X[:, :2])


def test_sklearn_estimator_checks():
    sk = pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils import estimator_checks as ec

    est = HyperCleaner(lambda_=0.5)
    # The checks that apply: they construct, clone and inspect parameters. The rest of
    # check_estimator calls fit(X, y) with two arguments; HyperCleaner needs the trusted
    # validation split (X_val, y_val) that defines the upper level, so those do not apply.
    ec.check_parameters_default_constructible("HyperCleaner", est)
    ec.check_no_attributes_set_in_init("HyperCleaner", est)
    ec.check_get_params_invariance("HyperCleaner", est)
    ec.check_set_params("HyperCleaner", est)
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    with pytest.raises(NotFittedError):
        HyperCleaner().predict(np.zeros((2, 2)))

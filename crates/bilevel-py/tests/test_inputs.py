"""Bad and unusual input: shapes, NaN, memory layouts, dtypes, labels."""

import numpy as np
import pytest

import bilevel
from bilevel import problems as P
from bilevel import solvers as S

rng = np.random.default_rng(3)
X = rng.normal(size=(30, 4))
y = rng.integers(0, 3, size=30)
Xv = rng.normal(size=(10, 4))
yv = rng.integers(0, 3, size=10)
PB = S.Pbgd(update="gauss-seidel", gamma=10.0)


def _trace(p):
    return bilevel.run(p, PB, max_iter=30, record_every=10).trace_csv.splitlines()


def _no_time(lines):
    return [",".join(l.split(",")[:1] + l.split(",")[2:]) for l in lines]


def test_wrong_shapes():
    with pytest.raises(ValueError, match=r"`X` must be a 2-D array"):
        P.Cleaning(X[:, 0], y, Xv, yv)
    with pytest.raises(ValueError, match=r"`y` has 29 labels but the features have 30"):
        P.Cleaning(X, y[:-1], Xv, yv)
    with pytest.raises(ValueError, match=r"`X_val` has 3 features but `X` has 4"):
        P.Cleaning(X, y, Xv[:, :3], yv)
    with pytest.raises(ValueError, match=r"`y_val` must be a 1-D array"):
        P.Cleaning(X, y, Xv, np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"`Y` has 5 rows"):
        P.Replearn.from_arrays(X, np.zeros((5, 2)), Xv, np.zeros((10, 2)), h=4)


def test_nan_and_bad_dtypes():
    Xn = X.copy()
    Xn[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"`X`: non-finite value \(NaN or Inf\) at sample 4, feature 2"):
        P.Cleaning(Xn, y, Xv, yv)
    with pytest.raises(ValueError, match=r"`X_val` must hold real numbers"):
        P.Cleaning(X, y, Xv.astype(str), yv)
    with pytest.raises(ValueError, match=r"label -1 of sample 0 is negative"):
        P.Cleaning(X, np.r_[-1, y[1:]], Xv, yv)
    with pytest.raises(ValueError, match=r"float labels must be integral"):
        P.Cleaning(X, y + 0.5, Xv, yv)


def test_layouts_and_float32_are_converted():
    base = _no_time(_trace(P.Cleaning(X.astype(np.float32).astype(np.float64), y, Xv, yv)))
    assert _no_time(_trace(P.Cleaning(X.astype(np.float32), y, Xv, yv))) == base
    assert _no_time(_trace(P.Cleaning(np.asfortranarray(X.astype(np.float32)), y, Xv, yv))) == base
    strided = np.zeros((30, 8), dtype=np.float32)
    strided[:, ::2] = X.astype(np.float32)
    assert not strided[:, ::2].flags.c_contiguous
    assert _no_time(_trace(P.Cleaning(strided[:, ::2], y, Xv, yv))) == base


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64, np.float64])
def test_integer_label_dtypes(dtype):
    ref = _no_time(_trace(P.Cleaning(X, y, Xv, yv)))
    assert _no_time(_trace(P.Cleaning(X, y.astype(dtype), Xv, yv.astype(dtype)))) == ref


def test_bool_and_string_labels():
    yb, yvb = y > 0, yv > 0
    p = P.Cleaning(X, yb, Xv, yvb)
    assert p.classes_ is None
    assert bilevel.run(p, PB, max_iter=5).model.shape == (4, 2)
    names = np.array(["cat", "dog", "eel"])
    ps = P.Cleaning(X, names[y], Xv, names[yv])
    assert list(ps.classes_) == ["cat", "dog", "eel"]
    # Sorted distinct strings map to 0, 1, 2: the same problem as the integer codes.
    assert _no_time(_trace(ps)) == _no_time(_trace(P.Cleaning(X, y, Xv, yv, classes=3)))


def test_corruption_mask_and_test_split():
    mask = rng.random(30) < 0.3
    p = P.Cleaning(X, y, Xv, yv, X_test=Xv, y_test=yv, corrupted=mask)
    res = bilevel.run(p, PB, max_iter=20)
    assert {"precision", "recall", "f1", "test_acc"} <= set(res.trace)
    with pytest.raises(ValueError, match=r"`corrupted` has 3 entries"):
        P.Cleaning(X, y, Xv, yv, corrupted=[True, False, True])
    with pytest.raises(ValueError, match="give both `X_test` and `y_test`"):
        P.Cleaning(X, y, Xv, yv, X_test=Xv)


def test_setting_errors_from_config_code():
    with pytest.raises(ValueError, match=r"\[problem\] `lambda` = -1: must be finite and >= 0"):
        bilevel.run(P.Cleaning(X, y, Xv, yv, lambda_=-1.0), PB)
    with pytest.raises(ValueError, match=r"unknown variant `hinge`"):
        bilevel.run(P.Cleaning(X, y, Xv, yv, loss="hinge"), PB)
    with pytest.raises(ValueError, match=r"\[problem\] `m` is for generated instances"):
        p = P.Replearn.from_arrays(X, X[:, :2], Xv, Xv[:, :2], h=4)
        p.settings["m"] = 3
        bilevel.run(p, S.Pbgd(gamma=1.0), max_iter=1)

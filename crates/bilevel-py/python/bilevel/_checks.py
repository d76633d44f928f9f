"""Input checks and conversions for arrays given to bilevel (one ValueError per problem,
naming the argument)."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np


def as_matrix(name: str, x: Any, rows: Optional[int] = None) -> np.ndarray:
    """`x` as a C-contiguous float64 matrix; float32, integer, bool, Fortran-ordered and
    strided inputs are converted (exactly), anything else is refused."""
    a = np.asarray(x)
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.floating)
        or np.issubdtype(a.dtype, np.integer)
        or a.dtype == np.bool_
    ):
        raise ValueError(f"`{name}` must hold real numbers; got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array (samples × features); got shape {a.shape}"
        )
    if rows is not None and a.shape[0] != rows:
        raise ValueError(
            f"`{name}` has {a.shape[0]} rows but {rows} were expected (one per sample)"
        )
    a = np.ascontiguousarray(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"`{name}`: non-finite value (NaN or Inf) at sample {i}, feature {j}; "
            "clean or impute the data first"
        )
    return a


def as_vector(name: str, x: Any, n: Optional[int] = None) -> np.ndarray:
    """`x` as a contiguous float64 vector of length n (finite)."""
    a = np.asarray(x)
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    ):
        raise ValueError(f"`{name}` must hold real numbers; got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64).reshape(-1)
    if n is not None and a.shape[0] != n:
        raise ValueError(f"`{name}` has {a.shape[0]} entries but {n} were expected")
    if not np.isfinite(a).all():
        i = int(np.argmin(np.isfinite(a)))
        raise ValueError(f"`{name}` has a non-finite entry at index {i}")
    return a


def _label_array(name: str, y: Any, n: int) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1-D array of class labels; got shape {a.shape}"
        )
    if a.shape[0] != n:
        raise ValueError(
            f"`{name}` has {a.shape[0]} labels but the features have {n} samples"
        )
    return a


def _is_index_dtype(a: np.ndarray) -> bool:
    return a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer)


def label_codes(
    named: Sequence[Tuple[str, Any, int]], classes: Optional[Sequence[Any]] = None
) -> Tuple[list, Optional[np.ndarray]]:
    """Labels of several splits as int64 class indices.

    Integer or bool labels are already class indices (0-based, as in the CLI's label files)
    and are kept; floats must be integral. Any other labels (strings, objects) are mapped to
    the positions of the sorted distinct labels of all splits (or of `classes` when given),
    which are returned as the second value."""
    arrays = [(name, _label_array(name, y, n)) for name, y, n in named]
    numeric = all(
        _is_index_dtype(a) or np.issubdtype(a.dtype, np.floating) for _, a in arrays
    )
    if classes is None and numeric:
        out = []
        for name, a in arrays:
            if np.issubdtype(a.dtype, np.floating):
                if not (np.isfinite(a).all() and (a == np.round(a)).all()):
                    raise ValueError(
                        f"`{name}`: float labels must be integral class indices; "
                        "give integers or strings"
                    )
            c = a.astype(np.int64)
            if (c < 0).any():
                i = int(np.argmax(c < 0))
                raise ValueError(
                    f"`{name}`: label {c[i]} of sample {i} is negative: labels are 0-based "
                    "class indices (or give strings / set classes)"
                )
            out.append(np.ascontiguousarray(c))
        return out, None
    if classes is None:
        classes = np.unique(np.concatenate([a.astype(object) for _, a in arrays]))
    classes = np.asarray(classes)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    out = []
    for name, a in arrays:
        codes = np.empty(a.shape[0], dtype=np.int64)
        for i, lab in enumerate(a.tolist()):
            if lab not in lookup:
                raise ValueError(f"`{name}`: label {lab!r} of sample {i} is not a known class")
            codes[i] = lookup[lab]
        out.append(codes)
    return out, classes

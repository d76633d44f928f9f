import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _bilevel_bin():
    cands = [os.environ.get("BILEVEL_BIN")]
    if os.environ.get("CARGO_TARGET_DIR"):
        cands.append(os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "bilevel"))
    cands += [str(ROOT / "target" / "release" / "bilevel"), shutil.which("bilevel")]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


@pytest.fixture(scope="session")
def bilevel_bin():
    b = _bilevel_bin()
    if b is None:
        pytest.skip(
            "the `bilevel` CLI binary is not built (cargo build --release -p bilevel-cli, "
            "or set BILEVEL_BIN); scripts/test.sh builds it"
        )
    return b

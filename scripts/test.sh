#!/usr/bin/env bash
# The project's one test command: the Rust tests, then the Python package built from source
# into a fresh virtual environment and its pytest suite (crates/bilevel-py/tests).
#   scripts/test.sh            # everything
#   VENV=/path scripts/test.sh # reuse a virtual environment
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --release
# The CLI binary: the Python tests compare their traces with `bilevel run`'s, bit for bit.
cargo build --release -p bilevel-cli
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export BILEVEL_BIN="$target_dir/release/bilevel"

VENV="${VENV:-$target_dir/py-venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Build tools and test dependencies (scikit-learn, pandas, dask, benchopt and jax are optional
# at run time; their tests skip without them, so they are installed here to run them all).
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "maturin>=1.16,<2" pytest numpy scikit-learn pandas "dask[distributed]" \
  benchopt jax
# `pip install .` is how users install it; build the same way (wheel from source).
"$VENV/bin/pip" install -q --force-reinstall --no-deps .
"$VENV/bin/python" -m pytest -q crates/bilevel-py/tests

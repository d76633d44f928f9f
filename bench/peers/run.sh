#!/usr/bin/env bash
# Side-by-side benchmark: our `bilevel bench` and the NumPy/JAX peers on the same seeded data.
#
#   bench/peers/run.sh [OUT_DIR] [SIZES]      (defaults: target/peers, small,medium,large)
#   SOFTMAX=1 adds benchopt's softmax data-cleaning case (bilevel bench --cleaning-softmax).
#
# 1. Makes a Python virtual environment from PyPI with the pinned versions of
#    requirements.txt (VENV, default bench/peers/.venv; reused when present).
# 2. Builds our binary (release; CARGO_TARGET_DIR is honoured) and runs `bilevel bench`, which
#    measures the machine rates, exports every case (data, start point, our iterates after the
#    check iterations) and times our iteration.
# 3. Runs the four peer versions (and the best order over R, shown apart) on each exported
#    case: each must agree with our iterates
#    (relative error <= 1e-8) before it is timed. Prints the table and writes peers.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/target/peers}"
sizes="${2:-small,medium,large}"
venv="${VENV:-$here/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
fi
"$venv/bin/python" -c 'import numpy, jax; print("numpy", numpy.__version__, "jax", jax.__version__)'

(cd "$root" && cargo build --release --quiet -p bilevel-cli)
bin="${CARGO_TARGET_DIR:-$root/target}/release/bilevel"
echo "load average before: $(cat /proc/loadavg)"
"$bin" bench --out "$out" --sizes "$sizes" --cleaning ${SOFTMAX:+--cleaning-softmax}
"$venv/bin/python" "$here/peers.py" "$out" | tee "$out/table.md"

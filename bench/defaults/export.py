"""Writes the prototype's data sets (proto.py, same seeds and corruption) as .npy files with a
config that names only the data, and runs them through `bilevel run` (the defaults rule).
Usage: python3 export.py OUT NAMES SEEDS [BILEVEL]; prints per data set the median [10%, 90%]
of F1 and gap closed (kept, retrained) and the median iterations and seconds of the runs."""
import json, os, subprocess, sys, time
import numpy as np
from proto import dataset

CONFIG = """[problem]
kind = "cleaning"
data = "files"

[problem.files]
train_x = "train_x.npy"
train_y = "train_y.npy"
val_x = "val_x.npy"
val_y = "val_y.npy"
test_x = "test_x.npy"
test_y = "test_y.npy"
corrupted = "corrupted.npy"
"""


def export(d, folder):
    os.makedirs(folder, exist_ok=True)
    for k, a in [("train_x", d["Xtr"]), ("val_x", d["Xva"]), ("test_x", d["Xte"])]:
        np.save(f"{folder}/{k}.npy", np.asarray(a, float))
    for k, a in [("train_y", d["ytr"]), ("val_y", d["yva"]), ("test_y", d["yte"])]:
        np.save(f"{folder}/{k}.npy", np.asarray(a, float))
    np.save(f"{folder}/corrupted.npy", d["mask"].astype(float))
    with open(f"{folder}/config.toml", "w") as f:
        f.write(CONFIG)


if __name__ == "__main__":
    out, names, seeds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    exe = sys.argv[4] if len(sys.argv) > 4 else "bilevel"
    for n in names:
        rows = []
        for s in range(seeds):
            folder = f"{out}/{n}-seed{s}"
            export(dataset(n, s, 0.5), folder)
            t = time.time()
            subprocess.run([exe, "run", f"{folder}/config.toml", "--out", f"{folder}/out", "--force"],
                           check=True, capture_output=True)
            wall = time.time() - t
            r = json.load(open(f"{folder}/out/summary.json"))["runs"][0]
            a = r["assessment"]
            rows.append((a["f1"], a["gap_closed"]["retrained_kept"], r["iterations"], wall))
        a = np.array([[np.nan if x is None else x for x in row] for row in rows], float)
        q = lambda j: (np.nanmedian(a[:, j]), np.nanquantile(a[:, j], 0.1), np.nanquantile(a[:, j], 0.9))
        print(f"{n}: F1 {q(0)[0]:.3f} [{q(0)[1]:.3f}, {q(0)[2]:.3f}] gap {q(1)[0]:.2f} [{q(1)[1]:.2f}, {q(1)[2]:.2f}] "
              f"it {np.median(a[:, 2]):.0f} s {np.median(a[:, 3]):.2f} (seeds {seeds})", flush=True)

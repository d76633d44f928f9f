"""The GIL is released during runs; Ctrl-C stops a run with the partial result attached."""

import _thread
import threading
import time

import numpy as np
import pytest

import bilevel
from bilevel import problems as P
from bilevel import solvers as S

# A run of a few seconds: a mid-sized cleaning problem, many iterations.
LONG = P.Cleaning.generated("clusters", seed=0, n_trn=2000, n_val=300, n_test=10, m=40, classes=5)
SOLVER = S.Pbgd(update="gauss-seidel", gamma=10.0, inner="exact")


def test_gil_is_released():
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    t = threading.Thread(target=count)
    t.start()
    t0 = time.perf_counter()
    bilevel.run(LONG, SOLVER, max_iter=10**7, record_every=50, max_time_s=1.0)
    t1 = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if t0 < x < t1]
    # With the GIL held, the counting thread would not run during the run at all.
    assert t1 - t0 > 0.2, "the run is too short to tell"
    assert len(during) > 0.3 * (t1 - t0) / 0.005


def test_ctrl_c_stops_with_partial_result():
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt) as info:
        bilevel.run(LONG, SOLVER, max_iter=10**7, record_every=10)
    assert time.perf_counter() - t0 < 5.0
    part = info.value.partial
    assert part.status == "interrupted"
    assert 0 < part.iterations < 10**7
    assert np.isfinite(part.u).all() and part.sample_weights.shape == (2000,)

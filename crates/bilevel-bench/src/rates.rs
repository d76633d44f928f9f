//! Machine rates for roofline floors: dense GEMM throughput (faer) and streaming read
//! bandwidth, measured in the same process as the kernels they bound, the cores' cache-line
//! round trip, and the thread setting every benchmark starts from.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use rayon::prelude::*;
use std::time::Instant;

/// Measured rates of this machine.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MachineRates {
    /// f64 GEMM throughput with the global parallelism, GFLOP/s (best of the repetitions).
    pub gemm_gflops: f64,
    /// The same on one thread.
    pub gemm_gflops_seq: f64,
    /// Read bandwidth of a buffer larger than the caches, GB/s (best of the repetitions).
    pub read_gbs: f64,
    /// Round trip of a cache line between two threads, nanoseconds (median of five runs of
    /// [`core_round_trip_ns`]).
    pub round_trip_ns: f64,
}

impl MachineRates {
    /// GEMM speedup of all threads over one.
    pub fn speedup(&self) -> f64 {
        self.gemm_gflops / self.gemm_gflops_seq
    }
}

/// Round trip of a cache line between two spinning threads, nanoseconds: about 110 when the
/// host runs this machine's two vCPUs on cores that share a cache, about 400 when it puts them
/// on different core complexes, which it decides for seconds to minutes at a time. Kernels
/// that hand data between the threads slow down in the second placement (the medium
/// iteration by 30 %), so every benchmark case records it.
pub fn core_round_trip_ns(trips: u64) -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    let flag = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..trips {
                while flag.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                flag.store(2 * i + 2, Ordering::Release);
            }
        });
        let t = Instant::now();
        for i in 0..trips {
            flag.store(2 * i + 1, Ordering::Release);
            while flag.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
        t.elapsed().as_secs_f64() / trips.max(1) as f64 * 1e9
    })
}

/// Best f64 GEMM rate over `reps` products of n×n matrices, with parallelism `par`.
pub fn gemm_gflops(n: usize, reps: usize, par: Par) -> f64 {
    let a = Mat::<f64>::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 13) as f64 / 13.0);
    let b = Mat::<f64>::from_fn(n, n, |i, j| ((i * 5 + j * 11) % 17) as f64 / 17.0);
    let mut c = Mat::<f64>::zeros(n, n);
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), 1.0, par);
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    2.0 * (n as f64).powi(3) / best / 1e9
}

/// Best read bandwidth over `reps` sums of a buffer of `bytes` bytes, split over the rayon
/// pool (both cores stream, as the kernels do).
pub fn read_gbs(bytes: usize, reps: usize) -> f64 {
    let n = bytes / 8;
    let buf: Vec<f64> = (0..n).map(|i| (i % 97) as f64).collect();
    let mut best = f64::INFINITY;
    let mut sink = 0.0;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let s: f64 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                // Four accumulators so the sum is bound by loads, not by the add latency.
                let mut acc = [0.0f64; 4];
                for q in c.chunks_exact(4) {
                    acc[0] += q[0];
                    acc[1] += q[1];
                    acc[2] += q[2];
                    acc[3] += q[3];
                }
                acc.iter().sum::<f64>()
            })
            .sum();
        best = best.min(t.elapsed().as_secs_f64());
        sink += s;
    }
    std::hint::black_box(sink);
    (n * 8) as f64 / best / 1e9
}

/// GEMM rate (n = 1024) and read bandwidth (256 MiB) with the global parallelism, the GEMM
/// rate on one thread, and the cores' round trip (about 0.3 s in all).
pub fn measure() -> MachineRates {
    let par = faer::get_global_parallelism();
    let mut trips: Vec<f64> = (0..5).map(|_| core_round_trip_ns(20_000)).collect();
    trips.sort_by(f64::total_cmp);
    MachineRates {
        gemm_gflops: gemm_gflops(1024, 5, par),
        gemm_gflops_seq: gemm_gflops(1024, 3, Par::Seq),
        read_gbs: read_gbs(256 << 20, 5),
        round_trip_ns: trips[2],
    }
}

/// Sets the rayon pool and faer's parallelism from `BILEVEL_THREADS` (default: all cores);
/// returns the thread count. Call once per process, before any parallel work.
pub fn set_threads_from_env() -> usize {
    let n = std::env::var("BILEVEL_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // A pool built earlier (by another benchmark in the same process) stays in force.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    let n = rayon::current_num_threads();
    faer::set_global_parallelism(if n > 1 { Par::rayon(n) } else { Par::Seq });
    n
}

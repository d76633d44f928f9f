//! How the benchmarks time a kernel or a whole run: medians over repetitions, the smallest of
//! a few rounds, and the fastest of a few whole runs (the peers in bench/peers time the same
//! way).

use std::time::Instant;

/// Median of `reps` timings of `f` (seconds), after one untimed warm-up call.
pub fn median_seconds(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Timing rounds of [`time_budget`] (the peers time the same way).
pub const TIMING_ROUNDS: usize = 3;

/// Seconds per call of `f`: the smallest of [`TIMING_ROUNDS`] medians, each over repetitions
/// filling a share of about `budget` seconds (11 to 4,001 per round), and the repetitions per
/// round. The smallest median keeps a phase of load from other work on the machine (which
/// comes and goes over seconds here) out of the figure, on both sides of a comparison.
pub fn time_budget(budget: f64, mut f: impl FnMut()) -> (f64, usize) {
    let probe = median_seconds(3, &mut f);
    let share = budget / TIMING_ROUNDS as f64;
    let reps = ((share / probe.max(1e-7)) as usize).clamp(11, 4001);
    let best = (0..TIMING_ROUNDS)
        .map(|_| median_seconds(reps, &mut f))
        .fold(f64::INFINITY, f64::min);
    (best, reps)
}

/// Whole runs are timed as the fastest of this many (the peers do the same).
pub const RUN_REPS: usize = 3;

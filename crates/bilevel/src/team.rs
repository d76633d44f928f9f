//! A persistent team of threads for kernels written once for all threads (SPMD): every
//! member runs the same closure with its own index and meets the others at spin barriers.
//!
//! Why not rayon: a rayon join from a thread outside the pool parks the caller and wakes a
//! worker, 3–8 µs per hand-off on the benchmark machine, and a medium-size PBGD iteration made
//! about ten of them. The team's members spin between jobs (for a bounded time, then park), so
//! a job start or a barrier costs about one cache-line round trip, and a kernel written for the
//! team keeps each member on its own block of the data across all of an iteration's products.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle member spins for the next job before it parks (a run's iterations follow
/// each other much faster; a parked member costs a wake-up, about 10 µs).
const SPIN_FOR: Duration = Duration::from_micros(300);

/// A spin barrier for the members of one job.
pub(crate) struct Barrier {
    parts: AtomicUsize,
    count: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

impl Barrier {
    fn new() -> Self {
        Barrier {
            parts: AtomicUsize::new(1),
            count: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Waits until every member of the job has arrived. Panics when another member panicked
    /// (it will never arrive).
    pub(crate) fn wait(&self) {
        let parts = self.parts.load(Relaxed);
        if parts <= 1 {
            return;
        }
        let generation = self.generation.load(Acquire);
        if self.count.fetch_add(1, AcqRel) + 1 == parts {
            self.count.store(0, Relaxed);
            self.generation.store(generation + 1, Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Acquire) == generation {
            if self.poisoned.load(Relaxed) {
                panic!("another member of the thread team panicked");
            }
            backoff(&mut spins);
        }
    }
}

/// Spin, and yield the core after a while (about 20 µs: another thread may need it to arrive,
/// when other work shares the cores).
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 1 << 10 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

type Job = dyn Fn(usize, &Barrier) + Sync;

struct Shared {
    /// The current job, valid while its epoch's members run (see [`Team::run`]).
    job: UnsafeCell<Option<&'static Job>>,
    /// Members in the current job (helpers with a larger index skip it).
    parts: AtomicUsize,
    epoch: AtomicUsize,
    /// Helpers done with the current epoch.
    done: AtomicUsize,
    barrier: Barrier,
    sleepers: AtomicUsize,
    park: Mutex<()>,
    wake: Condvar,
}

// The job cell is written by the caller of `run` only while no helper reads it (before the
// epoch is published and after every helper reported done).
unsafe impl Sync for Shared {}

/// The process-wide team: a caller and the helpers it has started so far.
pub(crate) struct Team {
    shared: Arc<Shared>,
    helpers: Mutex<usize>,
}

/// A helper's loop; `seen` is the epoch at its start (read by the spawner, before it
/// publishes the job the helper is started for).
fn helper(shared: Arc<Shared>, index: usize, mut seen: usize) {
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if shared.epoch.load(Acquire) != seen {
                break;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(1024) || start.elapsed() < SPIN_FOR {
                std::hint::spin_loop();
                continue;
            }
            let guard = shared.park.lock().unwrap_or_else(|e| e.into_inner());
            shared.sleepers.fetch_add(1, SeqCst);
            let guard = shared
                .wake
                .wait_while(guard, |_| shared.epoch.load(SeqCst) == seen)
                .unwrap_or_else(|e| e.into_inner());
            shared.sleepers.fetch_sub(1, SeqCst);
            drop(guard);
        }
        seen = shared.epoch.load(Acquire);
        if index < shared.parts.load(Acquire) {
            // SAFETY: the caller published the job before the epoch and keeps it alive until
            // every helper has reported done below.
            let job = unsafe { (*shared.job.get()).expect("a published job") };
            if catch_unwind(AssertUnwindSafe(|| job(index, &shared.barrier))).is_err() {
                shared.barrier.poisoned.store(true, Relaxed);
            }
        }
        shared.done.fetch_add(1, Release);
    }
}

impl Team {
    fn new() -> Self {
        Team {
            shared: Arc::new(Shared {
                job: UnsafeCell::new(None),
                parts: AtomicUsize::new(1),
                epoch: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                barrier: Barrier::new(),
                sleepers: AtomicUsize::new(0),
                park: Mutex::new(()),
                wake: Condvar::new(),
            }),
            helpers: Mutex::new(0),
        }
    }

    /// Reserves up to `parts` members (the caller and `parts − 1` helpers) for the jobs of
    /// one evaluation. Falls back to one (the caller alone) when another caller holds the
    /// team, when the caller is a rayon worker (parallelism is already taken at a coarser
    /// level, across seeds or starts), or when helpers cannot be started.
    pub(crate) fn crew(&self, parts: usize) -> Crew<'_> {
        let solo = Crew {
            shared: &self.shared,
            helpers: None,
            parts: 1,
        };
        let parts = parts.min(MAX_PARTS);
        if parts <= 1 || rayon::current_thread_index().is_some() {
            return solo;
        }
        // A job that panicked unwound through its crew's guard: the count is still right.
        let mut helpers = match self.helpers.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return solo,
        };
        let shared = &self.shared;
        while *helpers < parts - 1 {
            let (s, index, seen) = (shared.clone(), *helpers + 1, shared.epoch.load(Acquire));
            let spawned = std::thread::Builder::new()
                .name(format!("bilevel-team-{index}"))
                .spawn(move || helper(s, index, seen));
            if spawned.is_err() {
                break;
            }
            *helpers += 1;
        }
        let parts = parts.min(*helpers + 1);
        Crew {
            shared,
            helpers: Some(helpers),
            parts,
        }
    }
}

/// Members reserved for one caller ([`Team::crew`]).
pub(crate) struct Crew<'t> {
    shared: &'t Arc<Shared>,
    /// Held while the crew lives: the number of helpers started so far.
    helpers: Option<MutexGuard<'t, usize>>,
    parts: usize,
}

impl Crew<'_> {
    /// Members of each job.
    pub(crate) fn parts(&self) -> usize {
        self.parts
    }

    /// The caller alone (the team is released).
    pub(crate) fn alone(self) -> Self {
        Crew {
            shared: self.shared,
            helpers: None,
            parts: 1,
        }
    }

    /// Runs `f(t, barrier)` for t = 0..parts, t = 0 on the calling thread, and returns when
    /// all are done (a panic in any member is raised here, after all are done).
    pub(crate) fn run<'a>(&mut self, f: &'a (dyn Fn(usize, &Barrier) + Sync + 'a)) {
        let Some(helpers) = self.helpers.as_deref() else {
            f(0, &Barrier::new());
            return;
        };
        let (shared, parts, count) = (self.shared, self.parts, *helpers);
        // SAFETY: no helper reads the cell now (the previous job's helpers all reported done);
        // the lifetime is extended only until every helper has reported done below.
        unsafe {
            let job =
                std::mem::transmute::<&'a (dyn Fn(usize, &Barrier) + Sync + 'a), &'static Job>(f);
            *shared.job.get() = Some(job);
        }
        shared.parts.store(parts, Relaxed);
        shared.barrier.parts.store(parts, Relaxed);
        shared.barrier.count.store(0, Relaxed);
        shared.barrier.poisoned.store(false, Relaxed);
        shared.done.store(0, Relaxed);
        shared.epoch.fetch_add(1, SeqCst);
        if shared.sleepers.load(SeqCst) > 0 {
            let _guard = shared.park.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0, &shared.barrier)));
        if mine.is_err() {
            shared.barrier.poisoned.store(true, Relaxed);
        }
        let mut spins = 0u32;
        while shared.done.load(Acquire) < count {
            backoff(&mut spins);
        }
        // SAFETY: every helper is done with the job.
        unsafe { *shared.job.get() = None };
        if let Err(e) = mine {
            resume_unwind(e);
        }
        assert!(
            !shared.barrier.poisoned.load(Relaxed),
            "a member of the thread team panicked"
        );
    }
}

/// The most members of one job.
pub(crate) const MAX_PARTS: usize = 16;

/// The process-wide team.
pub(crate) fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(Team::new)
}

/// Parts of a team job of `fmas` multiply-adds: faer's global thread count when the job is
/// large enough that the team may pay for its barriers ([`TEAM_MIN_FMAS`]), else 1. The parts
/// fix the arithmetic (a kernel gives the same bits for a given number of parts, whoever runs
/// them); whether the team or the caller alone runs them is [`Chooser`]'s business.
pub(crate) fn parts_for(fmas: usize) -> usize {
    match faer::get_global_parallelism() {
        faer::Par::Seq => 1,
        par if fmas >= TEAM_MIN_FMAS => par.degree(),
        _ => 1,
    }
}

/// Below this many multiply-adds a job has one part.
pub(crate) const TEAM_MIN_FMAS: usize = 1 << 16;

/// Picks between the team and the caller alone from their measured times: it runs
/// [`Chooser::PROBE`] calls each way, keeps the faster (by the mean time of each way), and
/// probes again once [`Chooser::MIN_CALLS`] calls and [`Chooser::INTERVAL`] have passed (the
/// first probe after [`Chooser::WARM`] calls on the team). Both
/// ways run the same parts, so the choice changes the time, never the bits.
///
/// Why measure: the host moves the two vCPUs between core complexes within seconds. The small
/// replearn iteration took 12.3 µs on the team and 19.7 µs alone when they shared a cache
/// (cache-line round trip 45–80 ns), 26 µs on the team and 19.7 alone when they did not
/// (≈ 390 ns); and when other processes take the cores, a member descheduled at a barrier stalls
/// the others (a Gauss–Seidel iteration once took 3.3 ms instead of 35 µs while a second
/// process spun on both vCPUs). Probing costs 1–1.5 % of a medium or large run (8 calls alone
/// at about twice the time, every 512 calls).
#[derive(Debug)]
pub(crate) struct Chooser {
    /// Index of the next call within the current probe (None: settled).
    probe: Option<u64>,
    /// Summed times of the probe's calls, alone and on the team.
    total: [u64; 2],
    team: bool,
    calls_since: u64,
    since: Option<Instant>,
    interval: Duration,
}

impl Default for Chooser {
    fn default() -> Self {
        Chooser::with_interval(Self::INTERVAL)
    }
}

impl Chooser {
    /// Calls each way in a probe.
    pub(crate) const PROBE: u64 = 8;
    /// Calls between two probes, at least.
    pub(crate) const MIN_CALLS: u64 = 512;
    /// Time between two probes, at least.
    pub(crate) const INTERVAL: Duration = Duration::from_millis(250);
    /// Calls on the team before the first probe: the first team calls start the helpers and
    /// fill their caches (a first probe straight away chose the caller alone for a small
    /// Gauss–Seidel run in the near placement, 24.4 µs instead of 16).
    pub(crate) const WARM: u64 = 16;

    fn with_interval(interval: Duration) -> Self {
        Chooser {
            probe: None,
            total: [0; 2],
            team: true,
            calls_since: Self::MIN_CALLS - Self::WARM,
            since: None,
            interval,
        }
    }

    /// Whether the next call should use the team (a probe runs alone first).
    pub(crate) fn use_team(&self) -> bool {
        match self.probe {
            Some(k) => k >= Self::PROBE,
            None => self.team,
        }
    }

    /// Reports the time of the call just made (`team`: whether it ran on the team).
    pub(crate) fn record(&mut self, team: bool, nanos: u64) {
        match self.probe {
            Some(k) => {
                // The mean of each way's calls but its first (which may wake a parked helper):
                // under other load the fastest call says little about the rest.
                if k % Self::PROBE != 0 {
                    let b = &mut self.total[team as usize];
                    *b = b.saturating_add(nanos);
                }
                if k + 1 < 2 * Self::PROBE {
                    self.probe = Some(k + 1);
                } else {
                    self.team = self.total[1] < self.total[0];
                    self.probe = None;
                    self.calls_since = 0;
                    self.since = Some(Instant::now());
                }
            }
            None => {
                self.calls_since += 1;
                let due = self.since.is_none_or(|t| t.elapsed() >= self.interval);
                if self.calls_since >= Self::MIN_CALLS && due {
                    self.probe = Some(0);
                    self.total = [0; 2];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_runs_and_barriers_order_the_phases() {
        let t = Team::new();
        for parts in [1, 2, 3] {
            for _ in 0..200 {
                let slots: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                let sums: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                let mut crew = t.crew(parts);
                let ran = crew.parts();
                crew.run(&|i, b| {
                    slots[i].store(i + 1, Relaxed);
                    b.wait();
                    // Every member sees every other's phase-one write.
                    let s: usize = slots.iter().map(|s| s.load(Relaxed)).sum();
                    sums[i].store(s, Relaxed);
                });
                assert_eq!(ran, parts);
                let want = parts * (parts + 1) / 2;
                assert!(sums.iter().all(|s| s.load(Relaxed) == want));
            }
        }
    }

    #[test]
    fn the_chooser_keeps_the_faster_way_until_the_next_probe() {
        let epoch = 2 * Chooser::PROBE + Chooser::MIN_CALLS;
        for (alone, team, want) in [(20, 12, true), (20, 26, false)] {
            let mut c = Chooser::with_interval(Duration::ZERO);
            // The team first, until it is warm.
            for _ in 0..Chooser::WARM {
                assert!(c.use_team());
                c.record(true, team);
            }
            for call in 0..3 * epoch {
                let t = c.use_team();
                let k = call % epoch;
                if k < Chooser::PROBE {
                    assert!(!t, "probe alone at call {call}");
                } else if k < 2 * Chooser::PROBE {
                    assert!(t, "probe with the team at call {call}");
                } else {
                    assert_eq!(t, want, "choice at call {call}");
                }
                c.record(t, if t { team } else { alone });
            }
        }
        // A probe waits for its interval as well as for its calls.
        let mut c = Chooser::with_interval(Duration::from_secs(3600));
        for _ in 0..2 * Chooser::PROBE + 3 * Chooser::MIN_CALLS {
            let t = c.use_team();
            c.record(t, if t { 1 } else { 2 });
        }
        assert!(c.probe.is_none() && c.team);
    }

    #[test]
    fn a_panicking_member_fails_the_job_without_hanging() {
        let t = Team::new();
        let r = catch_unwind(AssertUnwindSafe(|| {
            t.crew(2).run(&|i, b| {
                if i == 1 {
                    panic!("member 1");
                }
                b.wait();
            })
        }));
        assert!(r.is_err());
        // The team still works afterwards.
        let hits = AtomicUsize::new(0);
        t.crew(2).run(&|_, b| {
            b.wait();
            hits.fetch_add(1, Relaxed);
        });
        assert_eq!(hits.load(Relaxed), 2);
    }
}

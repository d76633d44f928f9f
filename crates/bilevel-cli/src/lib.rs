//! The `bilevel` command-line tool as a library: configuration files, figures, reports and the
//! subcommands, so that tests can call the config loader and the drawing code directly.

pub mod commands;
pub mod config;
pub mod outdir;
pub mod plot;
pub mod progress;
pub mod report;

/// Builds the global rayon pool with `n` threads and points faer at it. Call once, before any
/// parallel work.
pub fn set_threads(n: usize) -> anyhow::Result<()> {
    if n == 0 {
        anyhow::bail!("--threads 0: give at least 1 thread");
    }
    let max = max_threads();
    if n > max {
        anyhow::bail!(
            "--threads {n}: at most {max} (4 per logical core of this machine, at least 16); more threads than cores only slow the run down"
        );
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| anyhow::anyhow!("cannot build a pool of {n} threads: {e}"))?;
    faer::set_global_parallelism(faer::Par::rayon(n));
    Ok(())
}

/// The largest `--threads` accepted: 4 per logical core, at least 16. Oversubscription past it
/// only costs time (a pool of 10⁵ threads took minutes to start).
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_mul(4).max(16)
}

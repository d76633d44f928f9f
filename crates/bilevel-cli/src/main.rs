//! `bilevel`: reproduce the paper's experiments, run a config, list, check gradients.

use anyhow::Result;
use bilevel_cli::{commands, plot, progress, set_threads};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Bilevel optimization with penalty-based gradient descent (Xiao & Chen, ICLR 2025).
#[derive(Parser)]
#[command(name = "bilevel", version, about, long_about = None)]
struct Cli {
    /// Worker threads for the parallel studies and linear algebra (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Memory limit for the data and closed forms a problem builds (e.g. 8G, 512M, 2GiB); an
    /// input that would need more is refused before anything is allocated. Default: the
    /// `max_memory` key of a config, else the machine's available memory.
    #[arg(long, global = true, value_name = "SIZE")]
    max_memory: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the paper's experiments; write report.md, figures/ and traces/ under --out.
    Reproduce {
        /// Experiments to run (default: all; see `bilevel list`).
        names: Vec<String>,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Smaller sizes and fewer seeds (a smoke test, under a minute).
        #[arg(long)]
        quick: bool,
        /// Replace what an earlier bilevel run wrote in a non-empty --out (other files stay).
        #[arg(long)]
        force: bool,
    },
    /// Run one experiment described by a TOML config (see configs/ and docs/cli.md).
    Run {
        /// The config file.
        config: PathBuf,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace what an earlier bilevel run wrote in a non-empty --out (other files stay).
        #[arg(long)]
        force: bool,
    },
    /// Time one PBGD iteration (Jacobi and Gauss–Seidel, one warm inner step) and a whole
    /// Jacobi run to a fixed tolerance on representation learning at the benchmark sizes, print
    /// the roofline table, and export every case (seeded data, start point, our iterates, our
    /// times) for the NumPy/JAX peers (bench/peers/).
    Bench {
        /// Output directory (one subdirectory per case, and ours.json).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Sizes: small, medium, large.
        #[arg(long, value_delimiter = ',', default_value = "small,medium,large")]
        sizes: Vec<String>,
        /// Iterations from the start point to the exported iterates (the agreement check).
        #[arg(long, default_value_t = 5)]
        check_iters: usize,
        /// Also the hyper-cleaning penalty gradient at Fashion-MNIST size (the real data when
        /// installed, else synthetic features of that shape) and, with Fashion-MNIST
        /// installed, the `cleaning` experiment's whole run on it.
        #[arg(long)]
        cleaning: bool,
        /// Instead: time PBGD, ALT-PBGD and PBGD-Free to a fixed ‖∇F_γ(u)‖ on representation
        /// learning (medium) and Fashion-MNIST cleaning (docs/performance.md).
        #[arg(long)]
        followups: bool,
        /// Solver-time budget per run of --followups, seconds.
        #[arg(long, default_value_t = 120.0)]
        budget: f64,
        /// Also benchopt's data-cleaning problem with softmax cross-entropy (20,000 × 784,
        /// Fashion-MNIST when installed, else synthetic features of that shape): one
        /// Gauss–Seidel iteration with the Newton-CG v block against its floor, and the whole
        /// run to a validation loss within 1e-3 of its final value.
        #[arg(long)]
        cleaning_softmax: bool,
    },
    /// List problems, solvers and experiments.
    List,
    /// Finite-difference gradient check of a problem (a kind, or a config file's problem).
    Check {
        /// Problem kind (example1, toy1d, quadratic) or a config file ending in .toml.
        problem: String,
        /// Seed of the random point (and of a generated instance).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn command_line() -> String {
    // The program as `bilevel`, not the build path, so reports read the same everywhere.
    std::iter::once("bilevel".to_string())
        .chain(std::env::args().skip(1))
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn main_inner() -> Result<u8> {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        set_threads(n)?;
    }
    if let Some(m) = &cli.max_memory {
        let limit = m.parse::<bilevel::limits::MemoryLimit>().map_err(|_| {
            anyhow::anyhow!(
                "--max-memory {m}: give a size such as 8G, 512M, 2GiB or a number of bytes"
            )
        })?;
        bilevel::limits::MemoryLimit::set_global(Some(limit));
    }
    plot::init_fonts();
    match cli.cmd {
        Cmd::Reproduce {
            names,
            out,
            quick,
            force,
        } => {
            let flag = progress::interrupt_flag();
            commands::reproduce(&names, &out, quick, force, flag, command_line())
        }
        Cmd::Run { config, out, force } => {
            let flag = progress::interrupt_flag();
            commands::run(&config, &out, force, flag)
        }
        Cmd::Bench {
            out,
            sizes,
            check_iters,
            cleaning,
            followups,
            budget,
            cleaning_softmax,
        } => {
            if followups {
                commands::bench_followups(&out, budget)
            } else {
                commands::bench(&out, &sizes, check_iters, cleaning, cleaning_softmax)
            }
        }
        Cmd::List => {
            commands::list();
            Ok(commands::EXIT_OK)
        }
        Cmd::Check { problem, seed } => commands::check(&problem, seed),
    }
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(commands::EXIT_FAIL)
        }
    }
}

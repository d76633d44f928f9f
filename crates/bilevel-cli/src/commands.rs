//! The subcommands: `reproduce`, `run`, `bench`, `list`, `check`.

use crate::config::{Config, PROBLEM_KINDS, ProblemConfig, SOLVER_KINDS, TraceFormat};
use crate::outdir::OutDir;
use crate::plot::{safe_stem, write_figure};
use crate::progress::{BarProgress, RunBar};
use crate::report::{self, FigureFiles, Header, Outcome, Summary, md_table};
use anyhow::{Context as _, Result, anyhow, bail};
use bilevel::experiments::{self, Context, CurveGroup, Figure, Panel};
use bilevel::trace::{Status, Trace};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// `bilevel bench`: measures the machine rates, then exports and times every representation
/// learning case (sizes × Jacobi/Gauss–Seidel) and, with `cleaning`, the Fashion-MNIST-sized
/// hyper-cleaning penalty gradient under `out`; prints the roofline table and writes ours.json
/// (rates, load average, cases).
pub fn bench(
    out: &Path,
    sizes: &[String],
    check_iters: usize,
    cleaning: bool,
    cleaning_softmax: bool,
) -> Result<u8> {
    use bilevel::solvers::Update;
    use bilevel_bench::{RepSize, RooflineRow};
    // "none" (or an empty list) skips representation learning (e.g. with --cleaning-softmax).
    let sizes: Vec<RepSize> = sizes
        .iter()
        .filter(|s| !s.is_empty() && s.as_str() != "none")
        .map(|s| {
            RepSize::ALL
                .into_iter()
                .find(|r| r.label() == s)
                .ok_or_else(|| anyhow!("unknown size {s:?}: use small, medium or large (or none)"))
        })
        .collect::<Result<_>>()?;
    mkdir(out)?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // Rates at the start, for the record; every case measures them again just before its
    // timing (the host moves the two vCPUs between core complexes, see
    // bilevel_bench::core_round_trip_ns).
    let rates = bilevel_bench::measure();
    let mut cases = Vec::new();
    for &size in &sizes {
        for update in [Update::Jacobi, Update::GaussSeidel] {
            let name = format!("{}-{}", size.label(), bilevel_bench::update_label(update));
            let dir = out.join(&name);
            mkdir(&dir)?;
            cases.push(bilevel_bench::export_replearn_case(
                size,
                update,
                0,
                check_iters,
                &dir,
            )?);
        }
    }
    if cleaning {
        let dir = out.join("cleaning-fmnist");
        mkdir(&dir)?;
        cases.push(bilevel_bench::export_cleaning_case(0, &dir)?);
    }
    let mut runs = Vec::new();
    for &size in &sizes {
        let dir = out.join(format!("{}-jacobi-run", size.label()));
        mkdir(&dir)?;
        let r = bilevel_bench::export_replearn_run(size, Update::Jacobi, 0, &dir)?;
        println!(
            "{}: {} iterations to a distance of {:e} from the penalty optimum in {:.3} s ({:.2}x its floor, {:.2}x the floor of our work; {:.3} s checking the distance every iteration; cores' round trip {:.0} ns)",
            r.name,
            r.iters,
            r.tol,
            r.seconds,
            r.seconds / r.floor,
            r.seconds / r.work_floor,
            r.seconds_checked,
            r.rates.round_trip_ns
        );
        runs.push(serde_json::to_value(&r)?);
    }
    if cleaning {
        if std::path::Path::new(bilevel::data::FASHION_MNIST_DIR).is_dir() {
            let dir = out.join("cleaning-fmnist-run");
            mkdir(&dir)?;
            let r = bilevel_bench::export_cleaning_run(0, &dir)?;
            println!(
                "cleaning-fmnist-run: {} iterations in {:.2} s ({:.2}x its floor {:.2} s; cores' round trip {:.0} ns), test accuracy {:.4} (within 0.5 points of it after iteration {}, {:.2} s); {}",
                r.iters,
                r.seconds,
                r.seconds / r.floor,
                r.floor,
                r.rates.round_trip_ns,
                r.final_test_acc,
                r.target_iter,
                r.seconds_to_target,
                r.solver_note
            );
            runs.push(serde_json::to_value(&r)?);
        } else {
            println!(
                "cleaning-fmnist-run skipped: Fashion-MNIST is not installed in {} (apt-get install dataset-fashion-mnist)",
                bilevel::data::FASHION_MNIST_DIR
            );
        }
    }
    if cleaning_softmax {
        let dir = out.join("cleaning-softmax");
        mkdir(&dir)?;
        let c = bilevel_bench::export_softmax_case(&dir)?;
        println!(
            "cleaning-softmax ({}): one Gauss-Seidel iteration {:.1} ms (median {:.1}; {:.1} passes over X_trn; {:.2}x its floor {:.1} ms; cores' round trip {:.0} ns); whole run {} iterations in {:.2} s, validation loss within 1e-3 of its final {:.5} after iteration {} ({:.2} s), test accuracy {:.4}",
            c.data,
            c.seconds * 1e3,
            c.median_seconds * 1e3,
            c.passes_per_iter,
            c.seconds / c.floor,
            c.floor * 1e3,
            c.rates.round_trip_ns,
            c.run_iters,
            c.run_seconds,
            c.final_val_loss,
            c.target_iter,
            c.seconds_to_target,
            c.final_test_acc
        );
        runs.push(serde_json::to_value(&c)?);
    }
    let rows: Vec<RooflineRow> = cases
        .iter()
        .map(|c| RooflineRow {
            kernel: c.name.clone(),
            shape: String::new(),
            seconds: c.seconds,
            cost: c.cost,
            work: c.work,
            rates: c.rates,
        })
        .collect();
    let threads = rayon::current_num_threads();
    bilevel_bench::print_roofline(threads, &rows);
    let json = serde_json::json!({
        "threads": threads,
        "loadavg_start": load.trim(),
        "loadavg_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "rates": rates,
        "cases": cases,
        "runs": runs,
    });
    write(
        &out.join("ours.json"),
        &serde_json::to_string_pretty(&json)?,
    )?;
    Ok(EXIT_OK)
}

/// `bilevel bench --followups`: time to ‖∇F_γ(u)‖ ≤ FOLLOWUPS_EPS·‖∇F_γ(u0)‖ on
/// representation learning (medium) and, with Fashion-MNIST installed, on its hyper-cleaning,
/// for PBGD (Jacobi, Gauss–Seidel), ALT-PBGD and PBGD-Free; one run each, at most `budget_s`
/// seconds of solver time. Prints one line per run and writes followups.json under `out`.
pub fn bench_followups(out: &Path, budget_s: f64) -> Result<u8> {
    mkdir(out)?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut rows =
        bilevel_bench::followups_replearn(bilevel_bench::RepSize::Medium, 0, budget_s, 10)?;
    if Path::new(bilevel::data::FASHION_MNIST_DIR).is_dir() {
        rows.extend(bilevel_bench::followups_cleaning(0, budget_s, 10)?);
    } else {
        println!(
            "Fashion-MNIST cleaning skipped: not installed in {}",
            bilevel::data::FASHION_MNIST_DIR
        );
    }
    let json = serde_json::json!({
        "threads": rayon::current_num_threads(),
        "loadavg_start": load.trim(),
        "loadavg_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "eps_relative": bilevel_bench::FOLLOWUPS_EPS,
        "budget_s": budget_s,
        "runs": rows,
    });
    write(
        &out.join("followups.json"),
        &serde_json::to_string_pretty(&json)?,
    )?;
    Ok(EXIT_OK)
}

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: a claim failed, a run diverged, or a check failed.
pub const EXIT_FAIL: u8 = 1;
/// Exit status: interrupted by Ctrl-C (what was computed is written).
pub const EXIT_INTERRUPTED: u8 = 130;

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("cannot create directory {}", p.display()))
}

fn write(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))
}

fn rel(p: &Path, base: &Path) -> String {
    p.strip_prefix(base)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// `bilevel reproduce`: runs the named experiments (all when `names` is empty) and writes
/// `out/report.md`, `out/figures/`, `out/traces/`. Returns the exit status.
pub fn reproduce(
    names: &[String],
    out: &Path,
    quick: bool,
    force: bool,
    interrupt: Arc<AtomicBool>,
    command: String,
) -> Result<u8> {
    let all = experiments::all();
    let valid: Vec<&str> = all.iter().map(|e| e.name()).collect();
    let mut selected = Vec::new();
    for n in names {
        if !valid.contains(&n.as_str()) {
            bail!(
                "unknown experiment `{n}`; valid names: {} (see `bilevel list`)",
                valid.join(", ")
            );
        }
        if !selected.contains(&n.as_str()) {
            selected.push(n.as_str());
        }
    }
    let exps: Vec<_> = all
        .into_iter()
        .filter(|e| selected.is_empty() || selected.contains(&e.name()))
        .collect();
    let od = OutDir::open(out, force)?;
    let fig_dir = out.join("figures");
    let trace_dir = out.join("traces");
    mkdir(&fig_dir)?;
    mkdir(&trace_dir)?;
    let t0 = Instant::now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut not_run = Vec::new();
    for exp in &exps {
        if interrupt.load(Ordering::Relaxed) {
            not_run.push(exp.name().to_string());
            continue;
        }
        let t = Instant::now();
        let bar = BarProgress::new(exp.name());
        bilevel::experiments::Progress::message(&bar, exp.title());
        let ctx = Context {
            quick,
            progress: &bar,
            interrupt: Some(interrupt.clone()),
        };
        let res = exp.run(&ctx);
        bar.finish();
        let mut o = Outcome {
            name: exp.name().to_string(),
            title: exp.title().to_string(),
            result: res.map_err(|e| e.to_string()),
            figures: Vec::new(),
            traces: Vec::new(),
            summary_json: None,
            wall_time_s: 0.0,
            output_errors: Vec::new(),
        };
        // Taken out while the outputs record their file names in `o`.
        let result = std::mem::replace(&mut o.result, Err(String::new()));
        if let Ok(r) = &result {
            // A file that cannot be written is reported and counted as a failure; the other
            // outputs and experiments still go ahead.
            if let Err(e) = write_outputs(&od, r, &mut o, &fig_dir, &trace_dir) {
                eprintln!("{}: {e:#}", r.name);
                o.output_errors.push(format!("{e:#}"));
            }
        }
        o.result = result;
        o.wall_time_s = t.elapsed().as_secs_f64();
        match &o.result {
            Ok(r) => eprintln!(
                "{}: {} of {} claims PASS{}{} ({:.1} s)",
                o.name,
                r.claims.iter().filter(|c| c.pass).count(),
                r.claims.len(),
                if o.output_errors.is_empty() {
                    String::new()
                } else {
                    format!(", {} output(s) not written", o.output_errors.len())
                },
                if r.partial {
                    ", partial (interrupted)"
                } else {
                    ""
                },
                o.wall_time_s
            ),
            Err(e) => eprintln!("{}: ERROR: {e}", o.name),
        }
        outcomes.push(o);
        // Rewritten after every experiment so an interruption leaves a report.
        let header = Header {
            command: command.clone(),
            quick,
            wall_time_s: t0.elapsed().as_secs_f64(),
            not_run: Vec::new(),
            interrupted: interrupt.load(Ordering::Relaxed),
        };
        od.write(
            &out.join("report.md"),
            &report::reproduce_markdown(&outcomes, &header),
        )?;
    }
    let interrupted = interrupt.load(Ordering::Relaxed);
    let header = Header {
        command,
        quick,
        wall_time_s: t0.elapsed().as_secs_f64(),
        not_run,
        interrupted,
    };
    let report_path = out.join("report.md");
    od.write(
        &report_path,
        &report::reproduce_markdown(&outcomes, &header),
    )?;
    let c = report::total_counts(&outcomes);
    println!(
        "{} claims pass, {} fail{}{}, in {:.1} s; report: {}",
        c.pass,
        c.fail,
        if interrupted {
            format!(", {} not run (interrupted)", c.not_run)
        } else {
            String::new()
        },
        if c.skipped > 0 {
            format!(
                ", {} part(s) SKIPPED (see the top of the report)",
                c.skipped
            )
        } else {
            String::new()
        },
        header.wall_time_s,
        report_path.display()
    );
    // An interruption is reported as such even when a finished experiment failed: scripts
    // must be able to tell Ctrl-C from a failed claim.
    Ok(if interrupted {
        EXIT_INTERRUPTED
    } else if c.fail > 0 {
        EXIT_FAIL
    } else {
        EXIT_OK
    })
}

/// Writes an experiment's figures, traces and JSON summary, recording the file names in `o`.
fn write_outputs(
    od: &OutDir,
    r: &bilevel::experiments::Report,
    o: &mut Outcome,
    fig_dir: &Path,
    trace_dir: &Path,
) -> Result<()> {
    let out = od.root();
    for f in &r.figures {
        let [png, svg] = od
            .write_staged(fig_dir, |stage| {
                write_figure(f, stage).map(|(png, svg)| [png, svg])
            })
            .with_context(|| format!("drawing figure {} of {}", f.name, r.name))?;
        o.figures.push(FigureFiles {
            name: f.name.clone(),
            caption: f.caption.clone(),
            png: rel(&png, out),
            svg: rel(&svg, out),
        });
    }
    let dir = trace_dir.join(safe_stem(&r.name));
    mkdir(&dir)?;
    for (stem, tr) in &r.traces {
        let p = dir.join(format!("{}.csv", safe_stem(stem)));
        od.write_with(&p, |t| Ok(tr.save_csv(t)?))
            .with_context(|| format!("writing trace {}", p.display()))?;
        o.traces.push(rel(&p, out));
    }
    let sp = dir.join("summary.json");
    let summary = Summary {
        name: &r.name,
        title: &r.title,
        passed: r.passed(),
        partial: r.partial,
        wall_time_s: r.wall_time_s,
        settings: &r.settings,
        claims: &r.claims,
        tables: &r.tables,
        summary: &r.summary,
        notes: &r.notes,
        figures: &o.figures,
        traces: &o.traces,
    };
    let text = serde_json::to_string_pretty(&summary)
        .with_context(|| format!("serializing the summary of {}", r.name))?;
    od.write(&sp, &text)?;
    o.summary_json = Some(rel(&sp, out));
    Ok(())
}

struct SeedRun {
    seed: u64,
    trace: Trace,
    status: Status,
    error: Option<String>,
    files: Vec<String>,
    /// The solution folder (relative), when a point was written.
    solution: Option<String>,
    /// The problem's assessment of the point, or why it could not be made.
    assessment: Option<std::result::Result<bilevel::solution::Assessment, String>>,
}

/// Writes `DIR/solutions/seed{S}/`: u.npy and v.npy (float64), the problem's named arrays
/// ([`bilevel::Problem::solution_views`]) and solution.json (status, iteration, whether the
/// point is the end of a finished run or the last finite iterate of a partial one, files).
/// Returns the folder relative to `DIR`.
fn write_solution(
    od: &OutDir,
    problem: &dyn bilevel::Problem,
    seed: u64,
    u: &[f64],
    v: &[f64],
    iteration: usize,
    status: &Status,
) -> Result<String> {
    use bilevel::solution::View;
    let dir = od.root().join("solutions").join(format!("seed{seed}"));
    let mut views = vec![
        View::vector("u", "the upper-level variable", u.to_vec()),
        View::vector("v", "the lower-level variable", v.to_vec()),
    ];
    views.extend(problem.solution_views(u, v));
    let mut files = serde_json::Map::new();
    for view in &views {
        let p = dir.join(format!("{}.{}", safe_stem(&view.name), view.extension()));
        od.write_with(&p, |t| Ok(view.save(t)?))
            .with_context(|| format!("writing {}", p.display()))?;
        files.insert(
            rel(&p, od.root()),
            serde_json::json!({"shape": view.shape, "content": view.doc}),
        );
    }
    let partial = !matches!(
        status,
        Status::Converged(_) | Status::MaxIterations | Status::TimeLimit
    );
    let json = serde_json::json!({
        "seed": seed,
        "status": status_text(status),
        "iteration": iteration,
        "partial": partial,
        "point": if partial {
            "the last finite iterate of a run that did not finish (see status)"
        } else {
            "the final iterate"
        },
        "files": files,
    });
    od.write(
        &dir.join("solution.json"),
        &serde_json::to_string_pretty(&json)?,
    )?;
    Ok(rel(&dir, od.root()))
}

/// Sets the memory limit from the config's `max_memory`, unless `--max-memory` set one.
fn apply_max_memory(cfg: &Config) -> Result<()> {
    if !bilevel::limits::MemoryLimit::global_is_set()
        && let Some(m) = cfg.run.max_memory()?
    {
        bilevel::limits::MemoryLimit::set_global(Some(m));
    }
    Ok(())
}

/// `bilevel run CONFIG --out DIR`. Returns the exit status.
pub fn run(config: &Path, out: &Path, force: bool, interrupt: Arc<AtomicBool>) -> Result<u8> {
    let t0 = Instant::now();
    let cfg = Config::load(config)?;
    apply_max_memory(&cfg)?;
    let plan = cfg
        .plan()
        .with_context(|| format!("building the problem of {}", config.display()))?;
    let problem = &plan.problem;
    if cfg.observe.flatness && !problem.has_ll_solution() {
        bail!(
            "in config file {}: [observe] flatness = true needs a problem with a closed-form lower-level solution w*(u); {} has none",
            config.display(),
            problem.name()
        );
    }
    // Check every start before spending time on any run.
    let starts = cfg
        .seeds
        .iter()
        .map(|&s| plan.start(&cfg, s))
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("in config file {}", config.display()))?;
    // A start where f, g or γ ∇g overflow is refused now, naming the [start] keys or `gamma`.
    let probe = plan.solver(&cfg)?;
    let last = plan.options(&cfg, 0).max_iter;
    let gamma = probe.gamma(0).max(probe.gamma(last));
    for (&seed, (u0, v0)) in cfg.seeds.iter().zip(&starts) {
        let mut u = u0.clone();
        problem.project_u(&mut u);
        bilevel::run::check_start(problem.as_ref(), &u, v0, gamma).map_err(|e| {
            let from = match &e {
                bilevel::Error::InvalidSetting { name, .. } if name == "gamma" => {
                    "[solver]".to_string()
                }
                _ => format!("the start of seed {seed}, from {}", cfg.start.keys()),
            };
            anyhow!("in config file {}: {from}: {e}", config.display())
        })?;
    }
    // Taken only once the config, data and starts are known good, so a mistake there leaves
    // the folder untouched.
    let od = OutDir::open(out, force)?;
    let trace_dir = out.join("traces");
    let fig_dir = out.join("figures");
    mkdir(&trace_dir)?;
    let mut runs: Vec<SeedRun> = Vec::new();
    let mut solver_name = String::new();
    // A run-time error stops the remaining seeds but not the report of those that finished.
    let mut failure: Option<String> = None;
    for (&seed, (u0, v0)) in cfg.seeds.iter().zip(&starts) {
        if interrupt.load(Ordering::Relaxed) {
            break;
        }
        let mut solver = plan.solver(&cfg)?;
        let mut opts = plan.options(&cfg, seed);
        opts.interrupt = Some(interrupt.clone());
        let mut bar = RunBar::new(&format!("seed {seed}"), opts.max_iter);
        let mut flatness = cfg.observe.flatness.then(|| {
            let mut o = bilevel::diagnostics::FlatnessObserver::new(problem.as_ref());
            if let Some(n) = cfg.observe.flatness_samples {
                o.samples = n;
            }
            o
        });
        let mut observers: Vec<&mut dyn bilevel::trace::Observer> = vec![&mut bar];
        if let Some(o) = flatness.as_mut() {
            observers.push(o);
        }
        let res = bilevel::run(
            problem.as_ref(),
            solver.as_mut(),
            u0,
            v0,
            &opts,
            &mut observers,
        );
        drop(observers);
        drop(bar);
        solver_name = solver.name();
        let (trace, status, error, point) = match res {
            Ok(o) => (o.trace, o.status, None, Some((o.u, o.v, o.iterations))),
            Err(bilevel::RunError {
                error: bilevel::Error::Diverged(d),
                trace: Some(trace),
                last_finite,
            }) => {
                let msg = d.to_string();
                eprintln!("seed {seed}: {msg}");
                let st = Status::Diverged(d.reason.clone());
                (*trace, st, Some(msg), last_finite.map(|p| *p))
            }
            Err(e) => {
                let msg = format!("run with seed {seed} of {}: {}", config.display(), e.error);
                eprintln!("error: {msg}");
                failure = Some(msg);
                break;
            }
        };
        let mut files = Vec::new();
        for f in &cfg.output.formats {
            let p = match f {
                TraceFormat::Csv => trace_dir.join(format!("seed{seed}.csv")),
                TraceFormat::Json => trace_dir.join(format!("seed{seed}.json")),
            };
            od.write_with(&p, |t| {
                Ok(match f {
                    TraceFormat::Csv => trace.save_csv(t),
                    TraceFormat::Json => trace.save_json(t),
                }?)
            })
            .with_context(|| format!("writing trace {}", p.display()))?;
            files.push(rel(&p, out));
        }
        if let Some(r) = trace.last() {
            println!(
                "seed {seed}: {} after {} iterations; L_gamma = {:.6e}, f = {:.6e}, LL gap = {:.3e}, |grad L_gamma| = {:.3e}",
                status_text(&status),
                r.iter,
                r.l_gamma,
                r.f,
                r.ll_gap,
                r.grad_norm()
            );
        }
        let solution = match &point {
            Some((u, v, k)) => Some(write_solution(
                &od,
                problem.as_ref(),
                seed,
                u,
                v,
                *k,
                &status,
            )?),
            None => None,
        };
        let assessment = point.as_ref().and_then(|(u, v, _)| {
            problem
                .assess(u, v)
                .map_err(|e| format!("the assessment of seed {seed} failed: {e}"))
                .transpose()
        });
        if let Some(Err(e)) = &assessment {
            eprintln!("warning: {e}");
        }
        runs.push(SeedRun {
            seed,
            trace,
            status,
            error,
            files,
            solution,
            assessment,
        });
    }
    let mut figure = None;
    if cfg.output.figure && !runs.is_empty() {
        mkdir(&fig_dir)?;
        let fig = convergence_figure(
            &runs.iter().map(|r| &r.trace).collect::<Vec<_>>(),
            &solver_name,
        );
        let [png, svg] = od
            .write_staged(&fig_dir, |stage| {
                write_figure(&fig, stage).map(|(png, svg)| [png, svg])
            })
            .context("drawing the convergence figure")?;
        figure = Some((fig.caption, rel(&png, out), rel(&svg, out)));
    }
    let mut metrics_figure = None;
    if cfg.output.figure
        && let Some(fig) = metrics_figure_of(&runs.iter().map(|r| &r.trace).collect::<Vec<_>>())
    {
        let [png, svg] = od
            .write_staged(&fig_dir, |stage| {
                write_figure(&fig, stage).map(|(png, svg)| [png, svg])
            })
            .context("drawing the metrics figure")?;
        metrics_figure = Some((fig.caption, rel(&png, out), rel(&svg, out)));
    }
    let interrupted = interrupt.load(Ordering::Relaxed);
    od.write(
        &out.join("summary.json"),
        &run_summary_json(
            &cfg,
            problem.name(),
            &solver_name,
            &runs,
            interrupted,
            &plan,
        )?,
    )?;
    let md = run_markdown(
        config,
        &cfg,
        problem.name(),
        &solver_name,
        &runs,
        &plan.rule_lines(),
        [figure, metrics_figure],
        t0.elapsed().as_secs_f64(),
        interrupted,
        failure.as_deref(),
    );
    let rp = out.join("report.md");
    od.write(&rp, &md)?;
    println!("report: {}", rp.display());
    if let Some(msg) = failure {
        return Err(anyhow!(msg));
    }
    let diverged = runs.iter().filter(|r| r.error.is_some()).count();
    if diverged > 0 {
        eprintln!(
            "{diverged} of {} runs diverged; partial traces are in {}",
            runs.len(),
            trace_dir.display()
        );
        return Ok(EXIT_FAIL);
    }
    Ok(if interrupted {
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    })
}

fn status_text(s: &Status) -> String {
    match s {
        Status::Converged(why) => format!("converged ({why})"),
        Status::MaxIterations => "iteration limit".into(),
        Status::TimeLimit => "time limit".into(),
        Status::Interrupted => "interrupted".into(),
        Status::Diverged(why) => format!("DIVERGED ({why})"),
        Status::Running => "running".into(),
    }
}

/// L_γ (or its gap to the optimum), f, the lower-level gap and ‖∇L_γ‖ against iterations, one
/// line (or median and band) over the seeds.
pub fn convergence_figure(traces: &[&Trace], solver: &str) -> Figure {
    let series = |name: &str| -> Vec<Vec<(f64, f64)>> {
        traces.iter().filter_map(|t| t.series(name)).collect()
    };
    let has = |name: &str| series(name).iter().flatten().any(|p| p.1.is_finite());
    let label = if traces.len() > 1 {
        solver.to_string()
    } else {
        format!("{solver}, seed {}", traces.first().map_or(0, |t| t.seed))
    };
    let group = |name: &str| {
        vec![CurveGroup {
            label: label.clone(),
            runs: series(name),
        }]
    };
    let curves = |title: &str, y: &str, name: &str, log_y: bool| Panel::Curves {
        title: title.into(),
        x_label: "iteration".into(),
        y_label: y.into(),
        log_y,
        groups: group(name),
        markers: vec![],
    };
    let first = if has("l_gap") {
        curves("gap to the penalty optimum", "L_γ − min L_γ", "l_gap", true)
    } else {
        let positive = series("l_gamma")
            .iter()
            .flatten()
            .all(|p| !p.1.is_finite() || p.1 > 0.0);
        curves("penalty objective", "L_γ", "l_gamma", positive)
    };
    let second = if has("f_gap") {
        curves(
            "upper level: f − f*",
            "f − f* (bilevel optimum)",
            "f_gap",
            false,
        )
    } else {
        curves("upper-level objective", "f", "f", false)
    };
    let g_src = traces.first().map_or("exact", |t| t.g_star_source.as_str());
    let mut panels = vec![
        first,
        second,
        curves("lower-level gap", "g − g*", "ll_gap", true),
        curves("stationarity", "‖∇L_γ‖", "grad_norm", true),
    ];
    // The flatness observer's columns ([observe] flatness = true).
    let flat = traces
        .first()
        .is_some_and(|t| t.extra_names.iter().any(|n| n == "grad_reduced"));
    if flat {
        panels.push(curves(
            "reduced gradient (exact responses)",
            "‖∇F_γ(u)‖",
            "grad_reduced",
            true,
        ));
        if has("flatness_floor") {
            panels.push(curves(
                "flatness floor",
                "(δ/max gap)^{2(α−1)/α}",
                "flatness_floor",
                false,
            ));
        }
    }
    Figure {
        name: "convergence".into(),
        caption: format!(
            "{solver} on {}: penalty objective, upper-level objective, lower-level gap g − g* (g* {g_src}) and gradient norm of L_γ{} against iterations{}.",
            traces.first().map_or("", |t| t.problem.as_str()),
            if flat {
                "; the flatness observer's ‖∇F_γ(u)‖ with exact responses w*(u), v_γ*(u) and the floor of its flatness fit"
            } else {
                ""
            },
            if traces.len() > 1 {
                " (median over seeds, shaded 10–90%)"
            } else {
                ""
            }
        ),
        panels,
    }
}

#[allow(clippy::too_many_arguments)]
fn run_markdown(
    path: &Path,
    cfg: &Config,
    problem: String,
    solver: &str,
    runs: &[SeedRun],
    rule: &[String],
    figures: [Option<(String, String, String)>; 2],
    wall: f64,
    interrupted: bool,
    failure: Option<&str>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "# bilevel run: {}\n", path.display());
    if let Some(msg) = failure {
        let _ = writeln!(
            s,
            "**ERROR: {}.** The seeds after it were not run; the table shows those that finished.\n",
            report::text(msg)
        );
    }
    let _ = writeln!(s, "- Problem: {problem}");
    let _ = writeln!(s, "- Solver: {solver}");
    let _ = writeln!(s, "- Seeds: {:?}", cfg.seeds);
    let _ = writeln!(s, "- Wall time: {wall:.2} s");
    let _ = writeln!(s, "- Machine: {}\n", report::machine_info());
    if !rule.is_empty() {
        let _ = writeln!(
            s,
            "## Settings from the defaults rule\n\nThe config gives no solver: every setting below comes from the training and validation data by the hyper-cleaning defaults rule (docs/cleaning.md), except those marked \"given\".\n"
        );
        for l in rule {
            let _ = writeln!(s, "- {}", report::text(l));
        }
        s.push('\n');
    }
    if interrupted {
        let _ = writeln!(s, "**Interrupted (Ctrl-C): results are partial.**\n");
    }
    let diverged: Vec<&SeedRun> = runs.iter().filter(|r| r.error.is_some()).collect();
    if !diverged.is_empty() {
        let _ = writeln!(s, "**{} run(s) diverged:**\n", diverged.len());
        for r in diverged {
            let _ = writeln!(
                s,
                "- seed {}: {}",
                r.seed,
                report::text(r.error.as_deref().unwrap_or(""))
            );
        }
        s.push('\n');
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let last = r.trace.last();
            let num = |f: fn(&bilevel::Record) -> f64| {
                last.map_or("–".into(), |x| {
                    let v = f(x);
                    if v.is_nan() {
                        "–".into()
                    } else {
                        format!("{v:.4e}")
                    }
                })
            };
            vec![
                r.seed.to_string(),
                status_text(&r.status),
                last.map_or("0".into(), |x| x.iter.to_string()),
                num(|x| x.l_gamma),
                num(|x| x.f),
                num(|x| x.ll_gap),
                num(|x| x.grad_norm()),
                num(|x| x.l_gap),
                r.files.join(", "),
                r.solution.clone().map_or("–".into(), |d| format!("{d}/")),
            ]
        })
        .collect();
    s.push_str(&md_table(
        &[
            "seed".into(),
            "status".into(),
            "iterations".into(),
            "L_γ".into(),
            "f".into(),
            "g − g*".into(),
            "‖∇L_γ‖".into(),
            "L_γ − min L_γ".into(),
            "trace".into(),
            "solution".into(),
        ],
        &rows,
    ));
    for (caption, png, svg) in figures.into_iter().flatten() {
        let _ = writeln!(
            s,
            "\n![figure]({png})\n\n*{}* ([SVG]({svg}))",
            report::text(&caption)
        );
    }
    for r in runs {
        match &r.assessment {
            Some(Ok(a)) => {
                let _ = writeln!(s, "\n## {}, seed {}\n", report::text(&a.title), r.seed);
                s.push_str(&md_table(&a.header, &a.rows));
                s.push('\n');
                for n in &a.notes {
                    let _ = writeln!(s, "- {}", report::text(n));
                }
            }
            Some(Err(e)) => {
                let _ = writeln!(s, "\n**Seed {}: {}**", r.seed, report::text(e));
            }
            None => {}
        }
    }
    let _ = writeln!(
        s,
        "\n## Configuration\n\n```toml\n{}\n```",
        cfg.source.trim_end()
    );
    s
}

/// `DIR/summary.json` of `bilevel run`: per seed the status, iterations, the last record's
/// numbers, the trace and solution files and the problem's assessment.
fn run_summary_json(
    cfg: &Config,
    problem: String,
    solver: &str,
    runs: &[SeedRun],
    interrupted: bool,
    plan: &crate::config::Plan,
) -> Result<String> {
    let num = |x: f64| {
        if x.is_finite() {
            serde_json::json!(x)
        } else {
            serde_json::Value::Null
        }
    };
    let seeds: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let last = r.trace.last();
            serde_json::json!({
                "seed": r.seed,
                "status": status_text(&r.status),
                "error": r.error,
                "iterations": last.map(|x| x.iter),
                "final": last.map(|x| serde_json::json!({
                    "l_gamma": num(x.l_gamma), "f": num(x.f), "ll_gap": num(x.ll_gap),
                    "grad_norm": num(x.grad_norm()), "gamma": num(x.gamma),
                })),
                "traces": r.files,
                "solution": r.solution,
                "assessment": match &r.assessment {
                    Some(Ok(a)) => a.summary.clone(),
                    Some(Err(e)) => serde_json::json!({"error": e}),
                    None => serde_json::Value::Null,
                },
            })
        })
        .collect();
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "problem": problem,
        "solver": solver,
        "seeds": cfg.seeds,
        "interrupted": interrupted,
        "defaults_rule": plan.rule.as_ref().map(|r| &r.derived),
        "runs": seeds,
    }))?)
}

/// The problem's own metrics against iterations, when its traces carry any: metrics named
/// `*_acc` share a panel, so do `*_loss`, and the rest (for example precision, recall, F1)
/// share a third. None without metrics.
pub fn metrics_figure_of(traces: &[&Trace]) -> Option<Figure> {
    let names: Vec<String> = traces.first()?.metric_names.clone();
    if names.is_empty() {
        return None;
    }
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for n in &names {
        let key = match n.rsplit_once('_') {
            Some((_, "acc")) => "accuracy".to_string(),
            Some((_, "loss")) => "loss".to_string(),
            _ => "other".to_string(),
        };
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(n.clone()),
            None => groups.push((key, vec![n.clone()])),
        }
    }
    let panels = groups
        .into_iter()
        .map(|(key, members)| {
            let title = if key == "other" {
                members.join(", ")
            } else {
                key.clone()
            };
            Panel::Curves {
                title: title.clone(),
                x_label: "iteration".into(),
                y_label: title,
                log_y: false,
                groups: members
                    .iter()
                    .map(|m| CurveGroup {
                        label: m.clone(),
                        runs: traces.iter().filter_map(|t| t.series(m)).collect(),
                    })
                    .collect(),
                markers: vec![],
            }
        })
        .collect();
    Some(Figure {
        name: "metrics".into(),
        caption: format!(
            "Problem metrics against iterations ({}){}.",
            names.join(", "),
            if traces.len() > 1 {
                ", median over seeds, shaded 10–90%"
            } else {
                ""
            }
        ),
        panels,
    })
}

/// `bilevel list`.
pub fn list() {
    println!("Problems (`[problem] kind = ...` in configs, or `bilevel check KIND`):");
    for (k, d) in PROBLEM_KINDS {
        println!("  {k:<12} {d}");
    }
    println!("\nSolvers (`[solver] kind = ...`):");
    for (k, d) in SOLVER_KINDS {
        println!("  {k:<12} {d}");
    }
    println!("\nExperiments (`bilevel reproduce NAME ...`):");
    for e in experiments::all() {
        println!("  {:<12} {}", e.name(), e.title());
    }
}

/// Relative-error threshold of `bilevel check`.
pub const CHECK_TOL: f64 = 1e-6;

/// `bilevel check PROBLEM`: finite-difference gradient check at a seeded random point. PROBLEM
/// is a kind (default settings) or a config file (its `[problem]`). Returns the exit status.
pub fn check(problem: &str, seed: u64) -> Result<u8> {
    let (pc, base) = if problem.ends_with(".toml") {
        let p = Path::new(problem);
        let cfg = Config::load(p)?;
        apply_max_memory(&cfg)?;
        (cfg.problem, cfg.base_dir)
    } else {
        let pc = ProblemConfig::default_for(problem, seed).ok_or_else(|| {
            anyhow!(
                "unknown problem `{problem}`; valid names: {} (or a config file ending in .toml)",
                PROBLEM_KINDS
                    .iter()
                    .map(|k| k.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        (pc, std::path::PathBuf::from("."))
    };
    let p = pc.build(&base)?;
    let mut pt = bilevel::study::uniform_starts(seed, 1, p.dim_u(), p.dim_v(), -2.0, 2.0).remove(0);
    p.project_u(&mut pt.0);
    let gc = bilevel::diagnostics::gradient_check(p.as_ref(), &pt.0, &pt.1, 100);
    println!(
        "gradient check of {} (du = {}, dv = {}) at a random point (seed {seed}), central differences:",
        p.name(),
        p.dim_u(),
        p.dim_v()
    );
    let mut ok = true;
    for (name, e) in [
        ("df/du", gc.f_u),
        ("df/dv", gc.f_v),
        ("dg/du", gc.g_u),
        ("dg/dv", gc.g_v),
    ] {
        let pass = e.is_finite() && e <= CHECK_TOL;
        ok &= pass;
        println!(
            "  {name}: relative error {e:.2e}  {}",
            if pass { "PASS" } else { "FAIL" }
        );
    }
    println!(
        "{} (threshold {CHECK_TOL:e})",
        if ok { "PASS" } else { "FAIL" }
    );
    Ok(if ok { EXIT_OK } else { EXIT_FAIL })
}

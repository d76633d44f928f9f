//! `bilevel._core`: the Rust side of the Python package. It converts and delegates: settings
//! become the TOML tables of `bilevel run` and go through the CLI's config code
//! (`bilevel_cli::config`), so defaults, checks and error messages are the CLI's; runs are
//! `bilevel::run` on the problem and solver that code builds.

mod convert;
mod function;

use anyhow::Context as _;
use bilevel::problems::cleaning::{Cleaning, Split};
use bilevel::problems::replearn::RepLearning;
use bilevel::trace::Status;
use bilevel::{Problem, Trace};
use bilevel_cli::config::{
    CleaningArrays, Config, ProblemConfig, build_cleaning, build_replearn, cleaning_from_arrays,
    cleaning_rule_from_arrays, replearn_from_data,
};
use function::FunctionProblem;
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How often the waiting thread looks for Ctrl-C while a run computes.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

fn value_error(e: anyhow::Error) -> PyErr {
    // The CLI prints `{e:#}`: the whole context chain on one line.
    PyValueError::new_err(format!("{e:#}"))
}

/// A built problem, with the concrete type kept where Python shows named views of the point.
#[derive(Clone)]
enum Built {
    Cleaning(Arc<Cleaning>),
    Replearn(Arc<RepLearning>),
    Function(Arc<FunctionProblem>),
    Other(Arc<dyn Problem>),
}

impl Built {
    fn problem(&self) -> &dyn Problem {
        match self {
            Built::Cleaning(p) => p.as_ref(),
            Built::Replearn(p) => p.as_ref(),
            Built::Function(p) => p.as_ref(),
            Built::Other(p) => p.as_ref(),
        }
    }
}

/// A problem built by the config code (or from Python functions).
#[pyclass(module = "bilevel._core", name = "BuiltProblem", frozen)]
struct BuiltProblem {
    built: Built,
    /// The data-driven defaults rule, when the problem was built under it (cleaning arrays,
    /// no solver given): it supplies the solver, the run options and the start.
    rule: Option<Arc<bilevel::problems::cleaning::defaults::Defaults>>,
}

#[pymethods]
impl BuiltProblem {
    /// Problem name, as in traces.
    #[getter]
    fn name(&self) -> String {
        self.built.problem().name()
    }
    /// Length of u.
    #[getter]
    fn dim_u(&self) -> usize {
        self.built.problem().dim_u()
    }
    /// Length of v.
    #[getter]
    fn dim_v(&self) -> usize {
        self.built.problem().dim_v()
    }
    /// Names of the problem-specific trace columns.
    #[getter]
    fn metric_names(&self) -> Vec<String> {
        self.built.problem().metric_names()
    }
    /// What the data-driven defaults rule chose, one line per setting with its value and how it
    /// was derived (None when the problem was not built under the rule).
    #[getter]
    fn defaults_rule(&self) -> Option<Vec<String>> {
        self.rule.as_ref().map(|r| r.lines())
    }
    /// "cleaning", "replearn", "function" or "other".
    #[getter]
    fn family(&self) -> &'static str {
        match &self.built {
            Built::Cleaning(_) => "cleaning",
            Built::Replearn(_) => "replearn",
            Built::Function(_) => "function",
            Built::Other(_) => "other",
        }
    }
    /// Shape of the named views: cleaning (m, classes), replearn (m, h, n), else ().
    #[getter]
    fn shape(&self) -> Vec<usize> {
        match &self.built {
            Built::Cleaning(c) => vec![c.data().features(), c.data().classes],
            Built::Replearn(r) => {
                let (m, h, n) = r.shape();
                vec![m, h, n]
            }
            _ => vec![],
        }
    }
    /// The problem's named arrays of the solution (u, v) (`Problem::solution_views`): a dict of
    /// name → NumPy array (matrices row-major with their shape; masks as bool; names as a list).
    fn solution_views<'py>(
        &self,
        py: Python<'py>,
        u: PyReadonlyArray1<'py, f64>,
        v: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        use bilevel::solution::ViewData;
        let out = PyDict::new(py);
        for view in self
            .built
            .problem()
            .solution_views(u.as_slice()?, v.as_slice()?)
        {
            match view.data {
                ViewData::F64(d) => {
                    let a = PyArray1::from_vec(py, d);
                    out.set_item(&view.name, a.reshape(view.shape.clone())?)?;
                }
                ViewData::Bool(d) => {
                    let a = PyArray1::from_vec(py, d);
                    out.set_item(&view.name, a.reshape(view.shape.clone())?)?;
                }
                ViewData::Names(d) => out.set_item(&view.name, PyList::new(py, d)?)?,
            }
        }
        Ok(out)
    }
    /// The problem's assessment of the solution (`Problem::assess`, what `bilevel run`'s report
    /// shows) as a JSON string, or None when the problem has none.
    fn assess(
        &self,
        py: Python<'_>,
        u: PyReadonlyArray1<'_, f64>,
        v: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Option<String>> {
        let (u, v) = (u.as_slice()?.to_vec(), v.as_slice()?.to_vec());
        let p = self.built.problem();
        let a = py
            .detach(|| p.assess(&u, &v))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(a.map(|a| a.summary.to_string()))
    }
    /// Cleaning: sample weights ψ = sigmoid(u_scale · u).
    fn weights<'py>(
        &self,
        py: Python<'py>,
        u: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let Built::Cleaning(c) = &self.built else {
            return Err(PyValueError::new_err(
                "weights: only the cleaning problem has sample weights",
            ));
        };
        Ok(PyArray1::from_vec(py, c.weights(u.as_slice()?)))
    }
    /// f(u, v) with its gradients (value, grad_u, grad_v).
    fn f<'py>(
        &self,
        py: Python<'py>,
        u: PyReadonlyArray1<'py, f64>,
        v: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Eval<'py>> {
        self.eval(py, u, v, true)
    }
    /// g(u, v) with its gradients (value, grad_u, grad_v).
    fn g<'py>(
        &self,
        py: Python<'py>,
        u: PyReadonlyArray1<'py, f64>,
        v: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Eval<'py>> {
        self.eval(py, u, v, false)
    }
}

/// (value, grad_u, grad_v).
type Eval<'py> = (f64, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);
/// (u, v).
type Point<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

impl BuiltProblem {
    fn eval<'py>(
        &self,
        py: Python<'py>,
        u: PyReadonlyArray1<'py, f64>,
        v: PyReadonlyArray1<'py, f64>,
        upper: bool,
    ) -> PyResult<Eval<'py>> {
        let p = self.built.problem();
        let (u, v) = (u.as_slice()?.to_vec(), v.as_slice()?.to_vec());
        if u.len() != p.dim_u() || v.len() != p.dim_v() {
            return Err(PyValueError::new_err(format!(
                "u has {} entries and v {}, but the problem has dim_u = {} and dim_v = {}",
                u.len(),
                v.len(),
                p.dim_u(),
                p.dim_v()
            )));
        }
        let built = self.built.clone();
        let (val, gu, gv) = py.detach(move || {
            let p = built.problem();
            let (mut gu, mut gv) = (vec![0.0; u.len()], vec![0.0; v.len()]);
            let val = if upper {
                p.f(&u, &v, Some(&mut gu), Some(&mut gv))
            } else {
                p.g(&u, &v, Some(&mut gu), Some(&mut gv))
            };
            (val, gu, gv)
        });
        if let Built::Function(fp) = &self.built
            && let Some(e) = fp.take_error()
        {
            return Err(e);
        }
        Ok((val, PyArray1::from_vec(py, gu), PyArray1::from_vec(py, gv)))
    }
}

/// A TOML document from the Python tables, parsed by `Config::parse` like a config file.
fn parse_config(py: Python<'_>, doc: &Bound<'_, PyDict>) -> PyResult<Config> {
    let table = convert::table(doc, "")?;
    let text = toml::to_string(&table)
        .map_err(|e| PyValueError::new_err(format!("cannot write the settings as TOML: {e}")))?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| Path::new(".").to_path_buf());
    py.detach(|| Config::parse(&text, &cwd))
        .map_err(value_error)
}

fn matrix(name: &str, a: &PyReadonlyArray2<'_, f64>) -> PyResult<faer::Mat<f64>> {
    let (r, c) = (a.shape()[0], a.shape()[1]);
    let s = a
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("`{name}` must be C-contiguous")))?;
    Ok(faer::Mat::from_fn(r, c, |i, j| s[i * c + j]))
}

fn labels(name: &str, a: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<usize>> {
    a.as_slice()?
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            usize::try_from(l).map_err(|_| {
                PyValueError::new_err(format!(
                    "`{name}`: label {l} of sample {i} is negative: labels are 0-based class indices"
                ))
            })
        })
        .collect()
}

fn get<'py>(data: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(data.get_item(key)?.filter(|v| !v.is_none()))
}

fn need<'py>(data: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    get(data, key)?.ok_or_else(|| PyValueError::new_err(format!("missing array `{key}`")))
}

fn mat_arg(data: &Bound<'_, PyDict>, key: &str) -> PyResult<faer::Mat<f64>> {
    let a: PyReadonlyArray2<'_, f64> = need(data, key)?.extract()?;
    matrix(key, &a)
}

fn split_arg(data: &Bound<'_, PyDict>, x: &str, y: &str) -> PyResult<Split> {
    let xs = mat_arg(data, x)?;
    let ys: PyReadonlyArray1<'_, i64> = need(data, y)?.extract()?;
    Ok(Split::new(xs, labels(y, &ys)?))
}

/// Builds the problem of a parsed `[problem]` table, with in-memory arrays where the table
/// stands for files (cleaning `data = "files"`, replearn without `data_dir`).
fn build(
    py: Python<'_>,
    pc: &ProblemConfig,
    data: Option<&Bound<'_, PyDict>>,
    base: &Path,
    rule: Option<Option<usize>>,
) -> PyResult<(
    Built,
    Option<Arc<bilevel::problems::cleaning::defaults::Defaults>>,
)> {
    if rule.is_some() && !matches!((pc, data), (ProblemConfig::Cleaning(_), Some(_))) {
        return Err(PyValueError::new_err(
            "the defaults rule (no solver given) is for hyper-cleaning on arrays only; give a solver",
        ));
    }
    Ok((
        match (pc, data) {
            (ProblemConfig::Cleaning(c), Some(d)) if rule.is_some() => {
                let arrays = cleaning_arrays(d)?;
                let c = c.as_ref().clone();
                let max_iter = rule.flatten();
                let (p, r) = py
                    .detach(move || cleaning_rule_from_arrays(&c, arrays, max_iter))
                    .map_err(value_error)?;
                return Ok((Built::Cleaning(Arc::new(p)), Some(Arc::new(r))));
            }
            (ProblemConfig::Cleaning(c), Some(d)) => {
                let arrays = cleaning_arrays(d)?;
                let c = c.as_ref().clone();
                let p = py
                    .detach(move || cleaning_from_arrays(&c, arrays))
                    .map_err(value_error)?;
                Built::Cleaning(Arc::new(p))
            }
            (ProblemConfig::Replearn(c), Some(d)) => {
                let mats = [
                    mat_arg(d, "X")?,
                    mat_arg(d, "Y")?,
                    mat_arg(d, "X_val")?,
                    mat_arg(d, "Y_val")?,
                ];
                let c = c.clone();
                let p = py
                    .detach(move || {
                        replearn_from_data(&c, |h, scaling| {
                            let [x, y, xv, yv] = mats;
                            Ok(RepLearning::from_data(x, y, xv, yv, h, scaling)?)
                        })
                        .context("[problem] kind = \"replearn\"")
                    })
                    .map_err(value_error)?;
                Built::Replearn(Arc::new(p))
            }
            (_, Some(_)) => {
                return Err(PyValueError::new_err(format!(
                    "problem kind \"{}\" takes no arrays",
                    pc.kind()
                )));
            }
            // Concrete types for the named views; the same code as `ProblemConfig::build`.
            (_, None) => {
                let (pc, base) = (pc.clone(), base.to_path_buf());
                py.detach(move || -> anyhow::Result<Built> {
                    Ok(match &pc {
                        ProblemConfig::Cleaning(c) => {
                            Built::Cleaning(Arc::new(build_cleaning(c, &base)?))
                        }
                        ProblemConfig::Replearn(c) => {
                            Built::Replearn(Arc::new(build_replearn(c, &base)?))
                        }
                        _ => Built::Other(Arc::from(pc.build(&base)?)),
                    })
                })
                .map_err(value_error)?
            }
        },
        None,
    ))
}

/// The arrays of a cleaning problem given in memory.
fn cleaning_arrays(d: &Bound<'_, PyDict>) -> PyResult<CleaningArrays> {
    Ok(CleaningArrays {
        train: split_arg(d, "X", "y")?,
        val: split_arg(d, "X_val", "y_val")?,
        test: match get(d, "X_test")? {
            Some(_) => Some(split_arg(d, "X_test", "y_test")?),
            None => None,
        },
        corrupted: match get(d, "corrupted")? {
            Some(a) => Some(a.extract::<Vec<bool>>()?),
            None => None,
        },
        classes: match get(d, "classes")? {
            Some(a) => Some(a.extract::<usize>()?),
            None => None,
        },
    })
}

/// Builds the problem of `{"problem": table}` (settings checked by the config code); `data`
/// holds arrays for problems given in memory; `user` is a function problem.
#[pyfunction]
#[pyo3(signature = (problem, data=None, user=None, rule=false, max_iter=None))]
fn build_problem(
    py: Python<'_>,
    problem: &Bound<'_, PyDict>,
    data: Option<&Bound<'_, PyDict>>,
    user: Option<Bound<'_, FunctionProblemPy>>,
    rule: bool,
    max_iter: Option<usize>,
) -> PyResult<BuiltProblem> {
    if let Some(u) = user {
        return Ok(BuiltProblem {
            built: Built::Function(u.get().inner.clone()),
            rule: None,
        });
    }
    let doc = PyDict::new(py);
    doc.set_item("problem", problem)?;
    doc.set_item("solver", placeholder_solver(py)?)?;
    doc.set_item("seeds", vec![0u64])?;
    let cfg = parse_config(py, &doc)?;
    let (built, rule) = build(
        py,
        &cfg.problem,
        data,
        &cfg.base_dir,
        rule.then_some(max_iter),
    )?;
    Ok(BuiltProblem { built, rule })
}

fn placeholder_solver<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", "pbgd")?;
    d.set_item("gamma", 1.0)?;
    Ok(d)
}

fn status_parts(s: &Status) -> (&'static str, String) {
    match s {
        Status::Converged(w) => ("converged", w.clone()),
        Status::MaxIterations => ("max-iterations", String::new()),
        Status::TimeLimit => ("time-limit", String::new()),
        Status::Interrupted => ("interrupted", String::new()),
        Status::Diverged(w) => ("diverged", w.clone()),
        Status::Running => ("running", String::new()),
    }
}

fn trace_dict<'py>(py: Python<'py>, t: &Trace) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let cols = t.columns();
    let n = t.records.len();
    d.set_item(
        "iter",
        PyArray1::from_vec(py, t.records.iter().map(|r| r.iter as i64).collect()),
    )?;
    let base: [fn(&bilevel::trace::Record) -> f64; 12] = [
        |r| r.time_s,
        |r| r.f,
        |r| r.g,
        |r| r.g_star,
        |r| r.ll_gap,
        |r| r.gamma,
        |r| r.l_gamma,
        |r| r.grad_u,
        |r| r.grad_v,
        |r| r.f_gap,
        |r| r.l_gap,
        |r| r.dist_opt,
    ];
    for (k, get) in base.iter().enumerate() {
        d.set_item(
            &cols[k + 1],
            PyArray1::from_vec(py, t.records.iter().map(get).collect()),
        )?;
    }
    for (k, name) in t.metric_names.iter().enumerate() {
        let col: Vec<f64> = (0..n)
            .map(|i| t.records[i].metrics.get(k).copied().unwrap_or(f64::NAN))
            .collect();
        d.set_item(name, PyArray1::from_vec(py, col))?;
    }
    Ok(d)
}

/// One run, as `bilevel run` does one seed: `config` holds `solver`, optional `run` and
/// `start` tables; the problem is the given built one. Returns a dict (u, v, status, detail,
/// iterations, trace, trace_csv, solver, problem, interrupt). The GIL is released while Rust
/// computes; Ctrl-C stops the run after the current iteration and is returned under
/// `interrupt` (the KeyboardInterrupt) with the partial result.
#[pyfunction]
fn run<'py>(
    py: Python<'py>,
    problem: &BuiltProblem,
    config: &Bound<'py, PyDict>,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let doc = config.copy()?;
    // Under the defaults rule the config has no solver: the rule supplies it.
    let by_rule = match &problem.rule {
        Some(r) if !doc.contains("solver")? => {
            doc.set_item("solver", placeholder_solver(py)?)?;
            Some(r.clone())
        }
        _ => None,
    };
    let pt = PyDict::new(py);
    pt.set_item("kind", "example1")?;
    doc.set_item("problem", pt)?;
    doc.set_item("seeds", vec![seed])?;
    let cfg = parse_config(py, &doc)?;
    let built = problem.built.clone();
    let (u0, v0) = match (&by_rule, &cfg.start) {
        (Some(r), bilevel_cli::config::StartConfig::Default) => r.start.clone(),
        _ => cfg
            .start
            .point(built.problem(), seed)
            .map_err(value_error)?,
    };
    let flag = Arc::new(AtomicBool::new(false));
    let mut opts = cfg.run.options(seed);
    if let Some(r) = &by_rule {
        opts.grad_u_rel_tol = r.grad_u_rel_tol;
        opts.max_iter = r.max_iter;
    }
    opts.interrupt = Some(flag.clone());
    // The data-driven defaults rule of `bilevel run` (a cleaning config without [solver]) is
    // not reachable from Python yet: a solver is required here.
    let solver_cfg = cfg.solver.clone().ok_or_else(|| {
        PyValueError::new_err("run: give a solver (for example bilevel.solvers.Pbgd())")
    })?;
    let fp = match &built {
        Built::Function(f) => Some(f.clone()),
        _ => None,
    };
    if let Some(f) = &fp {
        f.reset(flag.clone());
    }
    let (res, interrupt) = py.detach(move || {
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            let out =
                (|| -> anyhow::Result<(Result<bilevel::RunOutput, bilevel::RunError>, String)> {
                    let mut solver: Box<dyn bilevel::Solver> = match &by_rule {
                        Some(r) => Box::new(r.solver()),
                        None => solver_cfg.build()?,
                    };
                    let r =
                        bilevel::run(built.problem(), solver.as_mut(), &u0, &v0, &opts, &mut []);
                    Ok((r, solver.name()))
                })();
            let _ = tx.send(out);
        });
        let mut interrupt = None;
        let out = loop {
            match rx.recv_timeout(SIGNAL_POLL) {
                Ok(out) => break out,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if interrupt.is_none()
                        && let Err(e) = Python::attach(|py| py.check_signals())
                    {
                        flag.store(true, Ordering::Relaxed);
                        interrupt = Some(e);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(anyhow::anyhow!("the run's thread stopped without a result"));
                }
            }
        };
        let _ = worker.join();
        (out, interrupt)
    });
    if let Some(f) = &fp
        && let Some(e) = f.take_error()
    {
        return Err(e);
    }
    let (res, solver_name) = res.map_err(value_error)?;
    let out = PyDict::new(py);
    let (u, v, trace, status) = match res {
        Ok(o) => (o.u, o.v, o.trace, o.status),
        Err(bilevel::RunError {
            error: bilevel::Error::Diverged(d),
            trace: Some(trace),
            last_finite,
        }) => {
            // The point returned is the last recorded one that passed the checks.
            let st = Status::Diverged(d.reason.clone());
            let p = problem.built.problem();
            let (u, v) = match last_finite {
                Some(b) => (b.0, b.1),
                None => (vec![f64::NAN; p.dim_u()], vec![f64::NAN; p.dim_v()]),
            };
            (u, v, *trace, st)
        }
        Err(e) => {
            return Err(PyRuntimeError::new_err(format!(
                "run with seed {seed}: {e}"
            )));
        }
    };
    let (st, detail) = status_parts(&status);
    let mut csv = Vec::new();
    trace
        .write_csv(&mut csv)
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    out.set_item("u", PyArray1::from_vec(py, u))?;
    out.set_item("v", PyArray1::from_vec(py, v))?;
    out.set_item("status", st)?;
    out.set_item("detail", detail)?;
    out.set_item("iterations", trace.last().map_or(0, |r| r.iter))?;
    out.set_item("trace", trace_dict(py, &trace)?)?;
    out.set_item("columns", PyList::new(py, trace.columns())?)?;
    out.set_item("trace_csv", String::from_utf8_lossy(&csv).into_owned())?;
    out.set_item("solver", solver_name)?;
    out.set_item("problem", trace.problem.clone())?;
    out.set_item("seed", seed)?;
    out.set_item("interrupt", interrupt.map(|e| e.into_value(py)))?;
    Ok(out)
}

/// `n` start points uniform in [lo, hi] from the seed's start stream, as the library's
/// many-start studies draw them: a list of (u0, v0).
#[pyfunction]
fn uniform_starts<'py>(
    py: Python<'py>,
    problem: &BuiltProblem,
    seed: u64,
    n: usize,
    lo: f64,
    hi: f64,
) -> PyResult<Vec<Point<'py>>> {
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(PyValueError::new_err(format!(
            "box = [{lo}, {hi}]: need finite lo <= hi"
        )));
    }
    let p = problem.built.problem();
    Ok(
        bilevel::study::uniform_starts(seed, n, p.dim_u(), p.dim_v(), lo, hi)
            .into_iter()
            .map(|(u, v)| (PyArray1::from_vec(py, u), PyArray1::from_vec(py, v)))
            .collect(),
    )
}

/// Rows of `x` times a column-major matrix `w` (m × n): the scores of a linear model.
#[pyfunction]
fn scores<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    w: PyReadonlyArray1<'py, f64>,
    n: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let x = matrix("X", &x)?;
    let w = w.as_slice()?;
    let m = x.ncols();
    if w.len() != m * n {
        return Err(PyValueError::new_err(format!(
            "X has {m} features but the model has {} entries for {n} classes",
            w.len()
        )));
    }
    let wm = faer::MatRef::from_column_major_slice(w, m, n);
    let z = &x * wm;
    let rows: Vec<Vec<f64>> = (0..z.nrows())
        .map(|i| (0..n).map(|j| z[(i, j)]).collect())
        .collect();
    Ok(PyArray2::from_vec2(py, &rows)?)
}

use function::FunctionProblemPy;

/// The Rust core of the `bilevel` Python package.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BuiltProblem>()?;
    m.add_class::<FunctionProblemPy>()?;
    m.add_function(wrap_pyfunction!(build_problem, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(uniform_starts, m)?)?;
    m.add_function(wrap_pyfunction!(scores, m)?)?;
    m.add("PROBLEM_KINDS", bilevel_cli::config::PROBLEM_KINDS.to_vec())?;
    m.add("SOLVER_KINDS", bilevel_cli::config::SOLVER_KINDS.to_vec())?;
    Ok(())
}

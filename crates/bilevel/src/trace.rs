//! Per-iteration records, traces and observers. Traces are data first: CSV and JSON writers
//! here; figures are drawn from them elsewhere.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// One row of a trace, measured at the iterate (u_k, v_k).
///
/// Quantities that need something the problem does not provide (a certified optimum) are NaN
/// in memory, empty in CSV and null in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Iteration count (0 = start point).
    pub iter: usize,
    /// Wall time since the start of the run, seconds. The only field that is not reproducible.
    pub time_s: f64,
    /// Upper-level objective f.
    pub f: f64,
    /// Lower-level objective g.
    pub g: f64,
    /// Value function g*(u): exact where the problem has it, else the monitor's estimate.
    pub g_star: f64,
    /// Lower-level gap g − g*(u) (signed: an estimated g* can be above g).
    pub ll_gap: f64,
    /// Penalty constant γ in force.
    pub gamma: f64,
    /// Penalty objective L_γ = f + γ (g − g*).
    pub l_gamma: f64,
    /// ‖∇_u L_γ‖ (projected-gradient mapping when u is constrained).
    pub grad_u: f64,
    /// ‖∇_v L_γ‖.
    pub grad_v: f64,
    /// f − f* where the bilevel optimum is certified (signed).
    pub f_gap: f64,
    /// L_γ − min L_γ where the penalty optimum is known.
    pub l_gap: f64,
    /// Relative distance to the penalty optimum, where known.
    pub dist_opt: f64,
    /// Problem-specific metrics, named in [`Trace::metric_names`].
    pub metrics: Vec<f64>,
    /// Columns contributed by observers ([`Observer::columns`]), named in
    /// [`Trace::extra_names`]; empty without such observers (and then absent from JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<f64>,
}

impl Record {
    /// ‖∇L_γ‖ over both blocks.
    pub fn grad_norm(&self) -> f64 {
        self.grad_u.hypot(self.grad_v)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "detail")]
pub enum Status {
    /// A stopping tolerance was met.
    Converged(String),
    /// The iteration limit was reached first.
    MaxIterations,
    /// The time limit was reached first.
    TimeLimit,
    /// Interrupted by the user; the trace holds the records so far.
    Interrupted,
    /// Stopped on divergence; the trace holds the records up to it.
    Diverged(String),
    /// Still running (observers see this).
    #[default]
    Running,
}

/// A run's records and what is needed to read them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Problem name.
    pub problem: String,
    /// Solver name with its key settings.
    pub solver: String,
    /// Seed of the run.
    pub seed: u64,
    /// Whether g* in the records is exact ("exact") or estimated ("estimate").
    pub g_star_source: String,
    /// Names of the problem-specific metric columns.
    pub metric_names: Vec<String>,
    /// Names of the observers' columns, after the metrics (absent from JSON when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_names: Vec<String>,
    /// The records, in iteration order.
    pub records: Vec<Record>,
    /// How the run ended.
    pub status: Option<Status>,
}

const BASE_COLUMNS: [&str; 13] = [
    "iter", "time_s", "f", "g", "g_star", "ll_gap", "gamma", "l_gamma", "grad_u", "grad_v",
    "f_gap", "l_gap", "dist_opt",
];

fn fmt_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:e}")
    } else if x.is_nan() {
        String::new()
    } else if x > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

/// Observer column `j` of a record (NaN when the record has none).
fn extra_at(r: &Record, j: usize) -> f64 {
    r.extra.get(j).copied().unwrap_or(f64::NAN)
}

impl Trace {
    /// Last record, if any.
    pub fn last(&self) -> Option<&Record> {
        self.records.last()
    }

    /// Column names of the CSV form.
    pub fn columns(&self) -> Vec<String> {
        BASE_COLUMNS
            .iter()
            .map(|s| s.to_string())
            .chain(self.metric_names.iter().cloned())
            .chain(self.extra_names.iter().cloned())
            .collect()
    }

    /// Writes the records as CSV (one header line, one line per record, full precision).
    pub fn write_csv<W: Write>(&self, w: W) -> Result<()> {
        let mut wr = csv::Writer::from_writer(w);
        let err = |e: csv::Error| Error::Write {
            path: "CSV trace".into(),
            reason: e.to_string(),
        };
        wr.write_record(self.columns()).map_err(err)?;
        for r in &self.records {
            let mut row = vec![r.iter.to_string()];
            for x in [
                r.time_s, r.f, r.g, r.g_star, r.ll_gap, r.gamma, r.l_gamma, r.grad_u, r.grad_v,
                r.f_gap, r.l_gap, r.dist_opt,
            ] {
                row.push(fmt_num(x));
            }
            row.extend(r.metrics.iter().map(|&x| fmt_num(x)));
            // A record no observer saw (the one at a non-finite iterate) has no extras.
            row.extend((0..self.extra_names.len()).map(|j| fmt_num(extra_at(r, j))));
            wr.write_record(&row).map_err(err)?;
        }
        wr.flush().map_err(|e| Error::Write {
            path: "CSV trace".into(),
            reason: e.to_string(),
        })
    }

    /// Writes the CSV form to a file.
    pub fn save_csv(&self, path: &Path) -> Result<()> {
        let f = std::fs::File::create(path).map_err(|e| Error::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.write_csv(std::io::BufWriter::new(f))
    }

    /// Writes the whole trace as JSON (NaN and Inf become null; `status` says how it ended).
    pub fn save_json(&self, path: &Path) -> Result<()> {
        let f = std::fs::File::create(path).map_err(|e| Error::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        serde_json::to_writer(std::io::BufWriter::new(f), self).map_err(|e| Error::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The column `name` as a series (iteration, value).
    pub fn series(&self, name: &str) -> Option<Vec<(f64, f64)>> {
        let get: Box<dyn Fn(&Record) -> f64> = match name {
            "time_s" => Box::new(|r| r.time_s),
            "f" => Box::new(|r| r.f),
            "g" => Box::new(|r| r.g),
            "g_star" => Box::new(|r| r.g_star),
            "ll_gap" => Box::new(|r| r.ll_gap),
            "gamma" => Box::new(|r| r.gamma),
            "l_gamma" => Box::new(|r| r.l_gamma),
            "grad_u" => Box::new(|r| r.grad_u),
            "grad_v" => Box::new(|r| r.grad_v),
            "grad_norm" => Box::new(|r| r.grad_norm()),
            "f_gap" => Box::new(|r| r.f_gap),
            "l_gap" => Box::new(|r| r.l_gap),
            "dist_opt" => Box::new(|r| r.dist_opt),
            other => match self.metric_names.iter().position(|n| n == other) {
                Some(j) => Box::new(move |r| r.metrics[j]),
                None => {
                    let j = self.extra_names.iter().position(|n| n == other)?;
                    Box::new(move |r| extra_at(r, j))
                }
            },
        };
        Some(
            self.records
                .iter()
                .map(|r| (r.iter as f64, get(r)))
                .collect(),
        )
    }

    /// True when two traces agree in every field except wall time.
    pub fn same_numbers(&self, other: &Trace) -> bool {
        self.records.len() == other.records.len()
            && self.records.iter().zip(&other.records).all(|(a, b)| {
                let mut a = a.clone();
                let mut b = b.clone();
                a.time_s = 0.0;
                b.time_s = 0.0;
                // Compare bit patterns so NaN == NaN.
                let bits = |r: &Record| {
                    let mut v = vec![
                        r.f, r.g, r.g_star, r.ll_gap, r.gamma, r.l_gamma, r.grad_u, r.grad_v,
                        r.f_gap, r.l_gap, r.dist_opt,
                    ];
                    v.extend(&r.metrics);
                    v.extend(&r.extra);
                    (r.iter, v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                };
                bits(&a) == bits(&b)
            })
    }
}

/// What an observer sees at each record.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// The record.
    pub record: &'a Record,
    /// The upper-level iterate.
    pub u: &'a [f64],
    /// The lower-level iterate.
    pub v: &'a [f64],
    /// The iteration budget of the run.
    pub max_iter: usize,
}

/// Sees every record as it is made. Progress bars, streaming writers, trajectory recorders and
/// custom diagnostics are observers.
///
/// An observer may also add columns to the trace: [`Observer::columns`] names them once at the
/// start of the run, and after each [`Observer::observe`] the run appends the observer's
/// [`Observer::values`] to the record's `extra` (in the order the observers were passed).
pub trait Observer {
    /// Called for each record.
    fn observe(&mut self, snap: &Snapshot<'_>);
    /// Called once when the run ends.
    fn finish(&mut self, _status: &Status) {}
    /// Names of the columns this observer adds to every record (default: none).
    fn columns(&self) -> Vec<String> {
        Vec::new()
    }
    /// Appends this observer's values at the record it last observed, one per column.
    fn values(&self, _out: &mut Vec<f64>) {}
}

/// Keeps the iterates at every record (trajectories for figures).
#[derive(Debug, Clone, Default)]
pub struct PathRecorder {
    /// (iteration, u, v) at each record.
    pub points: Vec<(usize, Vec<f64>, Vec<f64>)>,
}

impl Observer for PathRecorder {
    fn observe(&mut self, snap: &Snapshot<'_>) {
        self.points
            .push((snap.record.iter, snap.u.to_vec(), snap.v.to_vec()));
    }
}

//! A bilevel problem defined by Python callables: f(u, v) and g(u, v) return
//! (value, grad_u, grad_v), so `jax.value_and_grad` or a torch autograd wrapper fit. Each call
//! attaches to the interpreter (the GIL is taken per call) and copies u, v into fresh NumPy
//! arrays. A Python exception is kept, the run is stopped through its interrupt flag, and the
//! exception is raised when the run returns.

use bilevel::{Problem, Smoothness};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct FunctionProblem {
    name: String,
    du: usize,
    dv: usize,
    f: Py<PyAny>,
    g: Py<PyAny>,
    ll: Option<Py<PyAny>>,
    smoothness: Option<Smoothness>,
    optimum: Option<f64>,
    project: Option<Py<PyAny>>,
    bounds: Option<(f64, f64)>,
    error: Mutex<Option<PyErr>>,
    stop: Mutex<Option<Arc<AtomicBool>>>,
    calls: [AtomicUsize; 2],
}

/// Copies a returned array-like into `out`, converting through `numpy.asarray(x, float64)`
/// when it is not already a 1-D float64 array (lists, float32, JAX or torch arrays).
fn copy_into(py: Python<'_>, x: &Bound<'_, PyAny>, out: &mut [f64], what: &str) -> PyResult<()> {
    let arr: PyReadonlyArray1<'_, f64> = match x.extract() {
        Ok(a) => a,
        Err(_) => {
            let np = py.import("numpy")?;
            let a = np
                .call_method1("asarray", (x, "float64"))?
                .call_method0("ravel")?;
            a.extract()?
        }
    };
    let s = arr.as_slice()?;
    if s.len() != out.len() {
        return Err(PyValueError::new_err(format!(
            "{what} has {} entries, expected {}",
            s.len(),
            out.len()
        )));
    }
    if let Some(i) = s.iter().position(|a| !a.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "{what} has a non-finite entry at index {i}"
        )));
    }
    out.copy_from_slice(s);
    Ok(())
}

impl FunctionProblem {
    /// Forgets an earlier error and stops future runs through `stop`.
    pub fn reset(&self, stop: Arc<AtomicBool>) {
        *self.error.lock().expect("error lock") = None;
        *self.stop.lock().expect("stop lock") = Some(stop);
    }

    /// The first Python exception since the last reset.
    pub fn take_error(&self) -> Option<PyErr> {
        self.error.lock().expect("error lock").take()
    }

    fn failed(&self) -> bool {
        self.error.lock().expect("error lock").is_some()
    }

    fn fail(&self, e: PyErr) {
        let mut slot = self.error.lock().expect("error lock");
        if slot.is_none() {
            *slot = Some(e);
        }
        if let Some(s) = self.stop.lock().expect("stop lock").as_ref() {
            s.store(true, Ordering::Relaxed);
        }
    }

    fn eval(
        &self,
        which: usize,
        u: &[f64],
        v: &[f64],
        gu: Option<&mut [f64]>,
        gv: Option<&mut [f64]>,
    ) -> f64 {
        if self.failed() {
            return f64::NAN;
        }
        self.calls[which].fetch_add(1, Ordering::Relaxed);
        let name = ["f", "g"][which];
        Python::attach(|py| {
            let res = (|| -> PyResult<f64> {
                let fun = if which == 0 { &self.f } else { &self.g };
                let out = fun
                    .bind(py)
                    .call1((PyArray1::from_slice(py, u), PyArray1::from_slice(py, v)))?;
                let t = out.cast::<PyTuple>().map_err(|_| {
                    PyValueError::new_err(format!(
                        "{name}(u, v) must return a tuple (value, grad_u, grad_v)"
                    ))
                })?;
                if t.len() != 3 {
                    return Err(PyValueError::new_err(format!(
                        "{name}(u, v) must return (value, grad_u, grad_v); got a tuple of {}",
                        t.len()
                    )));
                }
                let val: f64 = t.get_item(0)?.extract()?;
                if let Some(gu) = gu {
                    copy_into(py, &t.get_item(1)?, gu, &format!("{name}'s grad_u"))?;
                }
                if let Some(gv) = gv {
                    copy_into(py, &t.get_item(2)?, gv, &format!("{name}'s grad_v"))?;
                }
                Ok(val)
            })();
            res.unwrap_or_else(|e| {
                self.fail(e);
                f64::NAN
            })
        })
    }
}

impl Problem for FunctionProblem {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn dim_u(&self) -> usize {
        self.du
    }
    fn dim_v(&self) -> usize {
        self.dv
    }
    fn f(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.eval(0, u, v, gu, gv)
    }
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.eval(1, u, v, gu, gv)
    }
    fn ll_solution(&self, u: &[f64], w: &mut [f64]) -> bool {
        let Some(ll) = &self.ll else { return false };
        if self.failed() {
            w.fill(f64::NAN);
            return true;
        }
        Python::attach(|py| {
            let r = ll
                .bind(py)
                .call1((PyArray1::from_slice(py, u),))
                .and_then(|x| copy_into(py, &x, w, "ll_solution(u)"));
            if let Err(e) = r {
                self.fail(e);
                w.fill(f64::NAN);
            }
        });
        true
    }
    fn has_ll_solution(&self) -> bool {
        self.ll.is_some()
    }
    fn project_u(&self, u: &mut [f64]) {
        if let Some((lo, hi)) = self.bounds {
            for x in u.iter_mut() {
                *x = x.clamp(lo, hi);
            }
        }
        let Some(p) = &self.project else { return };
        if self.failed() {
            return;
        }
        Python::attach(|py| {
            let r = p
                .bind(py)
                .call1((PyArray1::from_slice(py, u),))
                .and_then(|x| copy_into(py, &x, u, "project_u(u)"));
            if let Err(e) = r {
                self.fail(e);
            }
        });
    }
    fn is_constrained(&self) -> bool {
        self.bounds.is_some() || self.project.is_some()
    }
    fn smoothness(&self) -> Option<Smoothness> {
        self.smoothness
    }
    fn bilevel_optimum(&self) -> Option<f64> {
        self.optimum
    }
}

/// Rust side of `bilevel.Problem.from_functions`.
#[pyclass(module = "bilevel._core", name = "FunctionProblem", frozen)]
pub struct FunctionProblemPy {
    pub inner: Arc<FunctionProblem>,
}

#[pymethods]
impl FunctionProblemPy {
    #[new]
    #[pyo3(signature = (dim_u, dim_v, f, g, ll_solution=None, smoothness=None, optimum=None, project_u=None, bounds=None, name=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        dim_u: usize,
        dim_v: usize,
        f: Bound<'_, PyAny>,
        g: Bound<'_, PyAny>,
        ll_solution: Option<Bound<'_, PyAny>>,
        smoothness: Option<(f64, f64, f64)>,
        optimum: Option<f64>,
        project_u: Option<Bound<'_, PyAny>>,
        bounds: Option<(f64, f64)>,
        name: Option<String>,
    ) -> PyResult<Self> {
        if dim_u == 0 || dim_v == 0 {
            return Err(PyValueError::new_err(format!(
                "dim_u = {dim_u}, dim_v = {dim_v}: both must be at least 1"
            )));
        }
        for (k, c) in [("f", &f), ("g", &g)] {
            if !c.is_callable() {
                return Err(PyValueError::new_err(format!("`{k}` must be callable")));
            }
        }
        for (k, c) in [("ll_solution", &ll_solution), ("project_u", &project_u)] {
            if let Some(c) = c
                && !c.is_callable()
            {
                return Err(PyValueError::new_err(format!("`{k}` must be callable")));
            }
        }
        let smoothness = match smoothness {
            None => None,
            Some((lf, lg, lg_vv)) => {
                for (k, v) in [("lf", lf), ("lg", lg), ("lg_vv", lg_vv)] {
                    let ok = v.is_finite() && if k == "lf" { v >= 0.0 } else { v > 0.0 };
                    if !ok {
                        return Err(PyValueError::new_err(format!(
                            "smoothness `{k}` = {v}: must be finite and > 0 (lf may be 0)"
                        )));
                    }
                }
                Some(Smoothness { lf, lg, lg_vv })
            }
        };
        if let Some((lo, hi)) = bounds
            && !(lo <= hi && !lo.is_nan() && !hi.is_nan())
        {
            return Err(PyValueError::new_err(format!(
                "bounds = ({lo}, {hi}): need lo <= hi"
            )));
        }
        if let Some(o) = optimum
            && !o.is_finite()
        {
            return Err(PyValueError::new_err(format!(
                "optimum = {o}: must be finite"
            )));
        }
        Ok(FunctionProblemPy {
            inner: Arc::new(FunctionProblem {
                name: name.unwrap_or_else(|| "python".into()),
                du: dim_u,
                dv: dim_v,
                f: f.unbind(),
                g: g.unbind(),
                ll: ll_solution.map(Bound::unbind),
                smoothness,
                optimum,
                project: project_u.map(Bound::unbind),
                bounds,
                error: Mutex::new(None),
                stop: Mutex::new(None),
                calls: Default::default(),
            }),
        })
    }

    /// Calls of f and g so far (f_calls, g_calls).
    #[getter]
    fn calls(&self) -> (usize, usize) {
        (
            self.inner.calls[0].load(Ordering::Relaxed),
            self.inner.calls[1].load(Ordering::Relaxed),
        )
    }
}

//! Python values → TOML values, so keyword arguments reach the CLI's config parser as the
//! tables of a config file. `None` means "key not given" (the config's default).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyString};

fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A dict with string keys as a TOML table; `None` values are left out.
pub fn table(d: &Bound<'_, PyDict>, prefix: &str) -> PyResult<toml::Table> {
    let mut t = toml::Table::new();
    for (k, v) in d.iter() {
        let key: String = k.extract().map_err(|_| {
            PyValueError::new_err(format!(
                "settings keys must be strings; got {k:?} in `{prefix}`"
            ))
        })?;
        if v.is_none() {
            continue;
        }
        let full = path(prefix, &key);
        t.insert(key, value(&v, &full)?);
    }
    Ok(t)
}

/// One value: bool, int, float, str, a sequence of values, or a dict of them.
pub fn value(v: &Bound<'_, PyAny>, key: &str) -> PyResult<toml::Value> {
    if v.is_instance_of::<PyBool>() {
        return Ok(toml::Value::Boolean(v.extract()?));
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(toml::Value::Float(v.extract()?));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(toml::Value::String(v.extract()?));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        return Ok(toml::Value::Table(table(d, key)?));
    }
    // Python and NumPy integers (anything with __index__).
    if v.hasattr("__index__")? {
        let i: i64 = v.call_method0("__index__")?.extract().map_err(|_| {
            PyValueError::new_err(format!("`{key}` = {v}: the integer is out of range"))
        })?;
        return Ok(toml::Value::Integer(i));
    }
    // NumPy floating scalars other than float64.
    if v.hasattr("dtype")? && v.hasattr("__float__")? && v.getattr("ndim")?.extract::<usize>()? == 0
    {
        return Ok(toml::Value::Float(v.extract()?));
    }
    if let Ok(it) = v.try_iter() {
        let mut out = Vec::new();
        for (i, x) in it.enumerate() {
            out.push(value(&x?, &format!("{key}[{i}]"))?);
        }
        return Ok(toml::Value::Array(out));
    }
    Err(PyValueError::new_err(format!(
        "`{key}` = {v}: unsupported value type {} (use a number, bool, string, list or dict)",
        v.get_type().name()?
    )))
}

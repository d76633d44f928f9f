//! Data loaders for the cleaning problem: the IDX format (gzip or raw), Fashion-MNIST with its
//! standard split for hyper-cleaning, and user data from `.npy` or CSV files.
//!
//! Every reader checks sizes before allocating (see [`crate::limits`]), refuses anything but a
//! regular file, and names the file, row and column of what it rejects.

pub mod fashion;
pub mod idx;
pub mod user;

pub use fashion::{FASHION_MNIST_DIR, FashionMnistConfig, load_fashion_mnist};
pub use idx::{IdxArray, read_idx, read_idx_from_bytes, read_idx_with};
pub use user::{
    UserData, UserDataPaths, load_user_data, load_user_data_with, read_csv_from_bytes,
    read_labels_from_bytes, read_table, read_table_with,
};

use crate::error::{Error, Result};
use std::path::Path;

/// Opens a data file for reading and returns it with its size. Only regular files are
/// accepted: a FIFO, a device or a directory gives an error at once instead of blocking or
/// reading forever.
pub fn open_data_file(path: &Path) -> Result<(std::fs::File, u64)> {
    let err = |reason: String| Error::File {
        path: path.display().to_string(),
        reason,
    };
    let not_regular = |ft: std::fs::FileType| {
        let kind = if ft.is_dir() {
            "a directory"
        } else if is_fifo(&ft) {
            "a named pipe (FIFO)"
        } else {
            "not a regular file (a device, socket or pipe)"
        };
        err(format!(
            "{kind}: data files must be regular files; save the data to a file and give its path"
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    // Should the path be swapped for a FIFO after the check, opening must not block either.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        const O_NONBLOCK: i32 = 0o4000;
        opts.custom_flags(O_NONBLOCK);
    }
    let f = opts.open(path).map_err(|e| err(e.to_string()))?;
    let meta = f.metadata().map_err(|e| err(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    Ok((f, meta.len()))
}

#[cfg(unix)]
fn is_fifo(ft: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    ft.is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &std::fs::FileType) -> bool {
    false
}

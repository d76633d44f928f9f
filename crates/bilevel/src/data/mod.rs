//! Data loaders for the cleaning problem: the IDX format (gzip or raw), Fashion-MNIST with its
//! standard split for hyper-cleaning, and user data from `.npy` or CSV files.

pub mod fashion;
pub mod idx;
pub mod user;

pub use fashion::{FASHION_MNIST_DIR, FashionMnistConfig, load_fashion_mnist};
pub use idx::{IdxArray, read_idx};
pub use user::{UserDataPaths, load_user_data, read_table};

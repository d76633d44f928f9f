//! Shipped problems, each with its certified answers.

pub mod cleaning;
pub mod counterexample;
pub mod example1;
pub mod quadratic;
pub mod toy1d;

pub use cleaning::Cleaning;
pub use counterexample::Counterexample;
pub use example1::Example1;
pub use quadratic::Quadratic;
pub use toy1d::Toy1d;
pub mod replearn;
pub use replearn::RepLearning;

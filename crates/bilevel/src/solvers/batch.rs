//! Mini-batches for stochastic gradients: each draw is a uniform sample without replacement of
//! the problem's training samples ([`Problem::batch_samples`]), taken from the run's seeded
//! stream ([`super::State::rng`]), so runs are reproducible.

use crate::error::{Error, Result};
use crate::problem::Problem;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// A mini-batch sampler of a fixed size.
#[derive(Debug, Clone)]
pub struct Batches {
    size: usize,
    perm: Vec<usize>,
    first: Vec<usize>,
}

impl Batches {
    /// A sampler of batches of `size` samples for `problem`. Errors when the problem has no
    /// mini-batch support or `size` is not in 1..=N.
    pub fn new(problem: &dyn Problem, size: usize) -> Result<Self> {
        let n = problem.batch_samples();
        if n == 0 {
            return Err(Error::Unsupported(format!(
                "problem {} has no mini-batch gradients (it does not split g into samples); remove batch_size to use full gradients",
                problem.name()
            )));
        }
        if size == 0 || size > n {
            return Err(Error::setting(
                "batch_size",
                size,
                format!(
                    "the mini-batch size must lie in 1..={n}, the number of training samples of {}",
                    problem.name()
                ),
            ));
        }
        Ok(Batches {
            size,
            perm: (0..n).collect(),
            first: Vec::with_capacity(size),
        })
    }

    /// The optional sampler of a solver's `batch` setting (None: full gradients).
    pub fn optional(problem: &dyn Problem, size: Option<usize>) -> Result<Option<Self>> {
        size.map(|b| Self::new(problem, b)).transpose()
    }

    /// The batch size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Draws the next batch: a partial Fisher–Yates shuffle of a persistent permutation, whose
    /// first `size` entries are then a uniform sample without replacement (O(size) per draw).
    pub fn draw(&mut self, rng: &mut ChaCha8Rng) -> &[usize] {
        let n = self.perm.len();
        for i in 0..self.size {
            let j = rng.random_range(i..n);
            self.perm.swap(i, j);
        }
        &self.perm[..self.size]
    }

    /// Two independent batches (each without replacement): the first for the steps that move
    /// a lower-level point (inner steps on w, Gauss–Seidel steps on v), the second for the
    /// gradient estimates taken at the moved points. A batch that has just moved a point is
    /// biased there (the point fits those samples better than average), so the estimates
    /// need a fresh one.
    pub fn draw_pair(&mut self, rng: &mut ChaCha8Rng) -> (&[usize], &[usize]) {
        self.draw(rng);
        self.first.clear();
        self.first.extend_from_slice(&self.perm[..self.size]);
        self.draw(rng);
        (&self.first, &self.perm[..self.size])
    }
}

/// The (move, estimate) batch pair of one iteration ([`Batches::draw_pair`]); both None
/// without mini-batches.
pub(crate) fn draw_pair<'a>(
    b: Option<&'a mut Batches>,
    rng: &mut ChaCha8Rng,
) -> (Option<&'a [usize]>, Option<&'a [usize]>) {
    match b {
        Some(b) => {
            let (m, e) = b.draw_pair(rng);
            (Some(m), Some(e))
        }
        None => (None, None),
    }
}

/// ", batch=B" for solver names (empty without mini-batches).
pub(crate) fn name_suffix(batch: Option<usize>) -> String {
    batch.map_or(String::new(), |b| format!(", batch={b}"))
}

//! How good a model and a set of weights are: validation and test loss and accuracy, cleaning
//! precision, recall and F1 against the corruption mask, and the unweighted and oracle
//! reference models.

use super::Cleaning;
use crate::error::Result;
use crate::problem::Problem;
use faer::{Mat, MatRef};
use serde::Serialize;

/// Validation and test loss (mean per sample) and accuracy of a model W.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelEval {
    /// Mean per-sample validation loss.
    pub val_loss: f64,
    /// Validation accuracy (argmax of Wᵀx).
    pub val_acc: f64,
    /// Mean per-sample test loss (NaN without a test set).
    pub test_loss: f64,
    /// Test accuracy (NaN without a test set).
    pub test_acc: f64,
}

/// A reference model (unweighted or oracle) with its evaluation.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Sample weights it was trained with.
    pub weights: Vec<f64>,
    /// The model W (column-major m × n).
    pub w: Vec<f64>,
    /// Its validation and test metrics.
    pub eval: ModelEval,
    /// Upper-level objective f at W.
    pub f: f64,
}

impl Cleaning {
    /// Mean loss and accuracy of W on a split (NaN for an empty split).
    fn eval_split(&self, x: &Mat<f64>, y: &Mat<f64>, labels: &[usize], v: &[f64]) -> (f64, f64) {
        if labels.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        let (m, n) = self.shape();
        let mut z = self.scores(x.as_ref(), MatRef::from_column_major_slice(v, m, n));
        let correct = (0..z.nrows())
            .filter(|&i| {
                let best = (0..n)
                    .max_by(|&a, &b| z[(i, a)].total_cmp(&z[(i, b)]))
                    .unwrap_or(0);
                best == labels[i]
            })
            .count();
        let losses = self.losses(&mut z, y.as_ref(), labels, false);
        let k = labels.len() as f64;
        (losses.iter().sum::<f64>() / k, correct as f64 / k)
    }

    /// Validation and test loss and accuracy of the model `v`.
    pub fn evaluate(&self, v: &[f64]) -> ModelEval {
        let (val_loss, val_acc) =
            self.eval_split(&self.data.val.x, &self.y_val, &self.data.val.labels, v);
        let (test_loss, test_acc) =
            self.eval_split(&self.data.test.x, &self.y_test, &self.data.test.labels, v);
        ModelEval {
            val_loss,
            val_acc,
            test_loss,
            test_acc,
        }
    }

    /// Cleaning precision, recall and F1 of the weights at u against the corruption mask.
    /// Positives are the samples flagged as corrupted (ψ_i < ½, i.e. not kept): precision =
    /// flagged ∩ corrupted / flagged, recall = flagged ∩ corrupted / corrupted,
    /// F1 = 2·tp / (flagged + corrupted). NaN where a denominator is 0.
    pub fn cleaning_scores(&self, u: &[f64]) -> (f64, f64, f64) {
        let psi = self.weights(u);
        let (mut tp, mut flagged, mut bad) = (0usize, 0usize, 0usize);
        for (p, &c) in psi.iter().zip(&self.data.corrupted) {
            let f = *p < 0.5;
            flagged += usize::from(f);
            bad += usize::from(c);
            tp += usize::from(f && c);
        }
        let div = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        (div(tp, flagged), div(tp, bad), div(2 * tp, flagged + bad))
    }

    /// A reference trained with fixed weights (see [`Cleaning::fit`]).
    pub fn reference(&self, weights: Vec<f64>) -> Result<Reference> {
        let w = self.fit(&weights)?;
        let eval = self.evaluate(&w);
        let u = vec![0.0; self.dim_u()];
        let f = self.f(&u, &w, None, None);
        Ok(Reference {
            weights,
            w,
            eval,
            f,
        })
    }

    /// Training on all samples with weight 1 (same λ).
    pub fn reference_unweighted(&self) -> Result<Reference> {
        self.reference(vec![1.0; self.data.train.len()])
    }

    /// The oracle: weight 1 on exactly the clean samples, 0 on the corrupted ones (same λ).
    pub fn reference_oracle(&self) -> Result<Reference> {
        self.reference(self.data.corrupted.iter().map(|&c| f64::from(!c)).collect())
    }
}

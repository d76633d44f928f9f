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

    /// The assessment behind [`Problem::assess`]: validation and test accuracy and loss of the
    /// iterate W, of the unweighted model, of the oracle (when a corruption mask is known), and
    /// of models retrained at the same λ on the kept samples (ψ ≥ ½, weight 1) and with the soft
    /// weights ψ; the share of the unweighted-to-oracle gap each closes (on test accuracy when a
    /// test set is given, else on validation accuracy, which the upper level optimizes and so
    /// flatters); how many samples are flagged; precision, recall and F1 against the mask.
    pub fn assessment(&self, u: &[f64], v: &[f64]) -> Result<crate::solution::Assessment> {
        let psi = self.weights(u);
        let kept: Vec<f64> = psi.iter().map(|&w| f64::from(w >= 0.5)).collect();
        let n_flagged = kept.iter().filter(|&&k| k == 0.0).count();
        let has_mask = self.data.corrupted.iter().any(|&c| c);
        let has_test = !self.data.test.labels.is_empty();
        let unweighted = self.reference_unweighted()?;
        let oracle = if has_mask {
            Some(self.reference_oracle()?)
        } else {
            None
        };
        let retrained_kept = self.reference(kept)?;
        let retrained_soft = self.reference(psi)?;
        let iterate = self.evaluate(v);
        let acc = |e: &ModelEval| if has_test { e.test_acc } else { e.val_acc };
        let gap = |e: &ModelEval| match &oracle {
            Some(o) => {
                let d = acc(&o.eval) - acc(&unweighted.eval);
                if d.abs() > 0.0 {
                    (acc(e) - acc(&unweighted.eval)) / d
                } else {
                    f64::NAN
                }
            }
            None => f64::NAN,
        };
        let fmt = |x: f64, digits: usize| {
            if x.is_finite() {
                format!("{x:.digits$}")
            } else {
                "–".into()
            }
        };
        let mut models: Vec<(&str, ModelEval)> =
            vec![("unweighted (all samples)", unweighted.eval)];
        if let Some(o) = &oracle {
            models.push(("oracle (clean samples only)", o.eval));
        }
        models.push(("iterate W", iterate));
        models.push(("retrained on the kept samples", retrained_kept.eval));
        models.push(("retrained with the weights ψ", retrained_soft.eval));
        let rows = models
            .iter()
            .map(|(name, e)| {
                vec![
                    name.to_string(),
                    fmt(e.val_acc, 4),
                    fmt(e.test_acc, 4),
                    fmt(e.val_loss, 4),
                    fmt(e.test_loss, 4),
                    if name.starts_with("unweighted") || name.starts_with("oracle") {
                        "–".into()
                    } else {
                        fmt(gap(e), 3)
                    },
                ]
            })
            .collect();
        let (precision, recall, f1) = self.cleaning_scores(u);
        let num = |x: f64| {
            if x.is_finite() {
                serde_json::json!(x)
            } else {
                serde_json::Value::Null
            }
        };
        let eval_json = |e: &ModelEval| {
            serde_json::json!({
                "val_acc": num(e.val_acc), "test_acc": num(e.test_acc),
                "val_loss": num(e.val_loss), "test_loss": num(e.test_loss),
            })
        };
        let summary = serde_json::json!({
            "samples": u.len(),
            "flagged": n_flagged,
            "corruption_mask_known": has_mask,
            "gap_measured_on": if has_test { "test accuracy" } else { "validation accuracy" },
            "unweighted": eval_json(&unweighted.eval),
            "oracle": oracle.as_ref().map(|o| eval_json(&o.eval)),
            "iterate": eval_json(&iterate),
            "retrained_kept": eval_json(&retrained_kept.eval),
            "retrained_soft": eval_json(&retrained_soft.eval),
            "gap_closed": {
                "iterate": num(gap(&iterate)),
                "retrained_kept": num(gap(&retrained_kept.eval)),
                "retrained_soft": num(gap(&retrained_soft.eval)),
            },
            "precision": if has_mask { num(precision) } else { serde_json::Value::Null },
            "recall": if has_mask { num(recall) } else { serde_json::Value::Null },
            "f1": if has_mask { num(f1) } else { serde_json::Value::Null },
        });
        let mut notes = vec![format!(
            "{n_flagged} of {} training samples flagged (ψ < ½).",
            u.len()
        )];
        if has_mask {
            notes.push(format!(
                "Against the corruption mask ({} corrupted): precision {}, recall {}, F1 {}.",
                self.data.corrupted.iter().filter(|&&c| c).count(),
                fmt(precision, 3),
                fmt(recall, 3),
                fmt(f1, 3)
            ));
            notes.push(format!(
                "Gap closed = (accuracy − unweighted) / (oracle − unweighted), on {}.",
                if has_test {
                    "test accuracy"
                } else {
                    "validation accuracy (no test set given; the upper level fits the validation set, so this flatters)"
                }
            ));
        } else {
            notes
                .push("No corruption mask given: no oracle, gap closed or cleaning scores.".into());
        }
        notes.push(format!(
            "Every model is trained at the problem's λ = {} with the same loss.",
            self.s.lambda
        ));
        if self.col_scale.is_some() {
            notes.push("Features were divided by their standard deviation over the training samples before solving (λ acts on the scaled features); the accuracies are those of the model in the data's own units (model.npy, W = diag(1/σ) W_scaled), which gives the same class scores.".into());
        }
        Ok(crate::solution::Assessment {
            title: "Cleaning result".into(),
            header: [
                "model",
                "val acc",
                "test acc",
                "val loss",
                "test loss",
                "gap closed",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            rows,
            summary,
            notes,
        })
    }
}

//! The hyper-cleaning defaults rule (problems::cleaning::defaults): it reads the training and
//! validation data only, explicit settings replace its values one by one, and feature scaling
//! maps the model back to the data's units exactly.

use bilevel::Problem;
use bilevel::problems::cleaning::defaults::{Defaults, Overrides};
use bilevel::problems::cleaning::{Cleaning, CleaningData, ClusterConfig};
use bilevel::run;

/// Gaussian clusters with columns in mixed units (×10^U(−2, 2)) and offset features.
fn mixed_clusters(seed: u64) -> CleaningData {
    let mut d = CleaningData::gaussian_clusters(&ClusterConfig {
        seed,
        ..ClusterConfig::default()
    })
    .unwrap();
    let m = d.features();
    let unit: Vec<f64> = (0..m)
        .map(|j| 10f64.powf(-2.0 + 4.0 * ((j * 7 % m) as f64 + 0.5) / m as f64))
        .collect();
    let offset: Vec<f64> = (0..m).map(|j| 3.0 * ((j * 5 % 11) as f64 - 5.0)).collect();
    for s in [&mut d.train, &mut d.val, &mut d.test] {
        for j in 0..m {
            for i in 0..s.x.nrows() {
                s.x[(i, j)] = (s.x[(i, j)] + offset[j]) * unit[j];
            }
        }
    }
    d
}

/// One run of the rule's solver from its start, seed 0.
fn run_rule(p: &Cleaning, r: &Defaults) -> bilevel::RunOutput {
    let mut s = r.solver();
    run(
        p,
        &mut s,
        &r.start.0,
        &r.start.1,
        &r.run_options(0),
        &mut [],
    )
    .unwrap()
}

#[test]
fn the_rule_never_reads_test_labels_or_the_mask() {
    let d = mixed_clusters(31);
    let mut e = d.clone();
    // Other test labels and another corruption mask: everything the rule and the run do
    // must stay bit-identical (the metrics that read them aside).
    let k = e.classes;
    for l in e.test.labels.iter_mut() {
        *l = (*l + 1) % k;
    }
    e.test.labels.reverse();
    for c in e.corrupted.iter_mut() {
        *c = !*c;
    }
    let (p1, r1) = Defaults::build(d, &Overrides::default()).unwrap();
    let (p2, r2) = Defaults::build(e, &Overrides::default()).unwrap();
    assert_eq!(r1.settings, r2.settings);
    assert_eq!(r1.derived, r2.derived);
    assert_eq!(
        (r1.gamma.to_bits(), r1.u_step.to_bits(), r1.grad_u_rel_tol),
        (r2.gamma.to_bits(), r2.u_step.to_bits(), r2.grad_u_rel_tol)
    );
    assert_eq!(r1.start, r2.start);
    let (o1, o2) = (run_rule(&p1, &r1), run_rule(&p2, &r2));
    assert_eq!((o1.u, o1.v, o1.iterations), (o2.u, o2.v, o2.iterations));
    assert_eq!(o1.trace.records.len(), o2.trace.records.len());
    for (a, b) in o1.trace.records.iter().zip(&o2.trace.records) {
        for (x, y) in [
            (a.f, b.f),
            (a.g, b.g),
            (a.g_star, b.g_star),
            (a.l_gamma, b.l_gamma),
            (a.grad_u, b.grad_u),
            (a.grad_v, b.grad_v),
        ] {
            assert_eq!(x.to_bits(), y.to_bits(), "iteration {}", a.iter);
        }
    }
    // The relative stop ended the run, well before the guard.
    assert!(
        matches!(&o1.status, bilevel::Status::Converged(w) if w.contains("grad_u")),
        "{:?}",
        o1.status
    );
    assert!(o1.iterations < 100, "{}", o1.iterations);
}

#[test]
fn the_first_record_measures_the_gradient_of_phi_and_the_stop_is_relative_to_it() {
    let (p, r) = Defaults::build(mixed_clusters(32), &Overrides::default()).unwrap();
    let o = run_rule(&p, &r);
    let recs = &o.trace.records;
    // u = 0 with |α ∇| far inside the box: the projected mapping is the gradient itself.
    let g0 = recs[0].grad_u;
    let rms = g0 / (p.dim_u() as f64).sqrt();
    assert!(
        (rms - r.first_grad_u_rms).abs() <= 1e-12 * rms,
        "{rms} vs {}",
        r.first_grad_u_rms
    );
    assert!((r.u_step * r.first_grad_u_rms - 0.1).abs() <= 1e-15);
    let last = recs.last().unwrap();
    assert!(last.grad_u <= 0.5 * g0);
    assert!(recs[1..recs.len() - 1].iter().all(|x| x.grad_u > 0.5 * g0));
}

#[test]
fn explicit_settings_replace_the_rule_one_by_one() {
    let d = mixed_clusters(33);
    let (n, n_val) = (d.train.len() as f64, d.val.len() as f64);
    let (_, base) = Defaults::build(d.clone(), &Overrides::default()).unwrap();
    assert_eq!(base.settings.lambda, 0.1 * n);
    assert_eq!(base.gamma, 100.0 * n_val / n);
    assert!(base.settings.scale_features);
    assert_eq!(base.grad_u_rel_tol, Some(0.5));
    assert!(base.derived.iter().all(|x| x.from_rule));
    let ov = Overrides {
        lambda: Some(3.0),
        gamma: Some(7.0),
        ..Overrides::default()
    };
    let (p, r) = Defaults::build(d.clone(), &ov).unwrap();
    assert_eq!((r.settings.lambda, r.gamma), (3.0, 7.0));
    assert_eq!(p.settings().lambda, 3.0);
    // The others keep the rule's values (the u step is re-derived at the given γ).
    assert!(r.settings.scale_features);
    assert_eq!(r.grad_u_rel_tol, Some(0.5));
    assert_eq!((r.settings.bound, r.settings.u_scale), (10.0, 1.0));
    let given: Vec<&str> = r
        .derived
        .iter()
        .filter(|x| !x.from_rule)
        .map(|x| x.setting.as_str())
        .collect();
    assert_eq!(given, ["lambda", "gamma"]);
    let ov = Overrides {
        u_step: Some(0.25),
        grad_u_rel_tol: Some(0.0),
        max_iter: Some(7),
        scale_features: Some(false),
        ..Overrides::default()
    };
    let (p, r) = Defaults::build(d, &ov).unwrap();
    assert_eq!(
        (r.u_step, r.grad_u_rel_tol, r.max_iter),
        (0.25, Some(0.0), 7)
    );
    assert!(p.feature_scales().is_none());
    assert_eq!(r.gamma, base.gamma);
    let o = run_rule(&p, &r);
    assert_eq!(o.iterations, 7);
}

#[test]
fn scaled_features_map_the_model_back_exactly() {
    let d = mixed_clusters(34);
    let raw = d.test.x.clone();
    let (p, r) = Defaults::build(d, &Overrides::default()).unwrap();
    let sig = p.feature_scales().unwrap().to_vec();
    let o = run_rule(&p, &r);
    let (m, n) = (p.data().features(), p.data().classes);
    let w_user = p.model_in_data_units(&o.v);
    let view = p
        .solution_views(&o.u, &o.v)
        .into_iter()
        .find(|v| v.name == "model")
        .unwrap();
    let bilevel::solution::ViewData::F64(data) = &view.data else {
        panic!("model is a float matrix")
    };
    for i in 0..m {
        for j in 0..n {
            assert_eq!(data[i * n + j], w_user[i + j * m]);
            // W_user = diag(1/σ) W.
            assert_eq!(w_user[i + j * m], o.v[i + j * m] / sig[i]);
        }
    }
    // Class scores of the raw test samples with W_user equal those of the scaled samples
    // (the problem's own data) with the iterate.
    let scaled = &p.data().test.x;
    for i in 0..raw.nrows() {
        for j in 0..n {
            let a: f64 = (0..m).map(|k| raw[(i, k)] * w_user[k + j * m]).sum();
            let b: f64 = (0..m).map(|k| scaled[(i, k)] * o.v[k + j * m]).sum();
            assert!((a - b).abs() <= 1e-10 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn softmax_under_the_rule_takes_the_newton_cg_v_block_and_the_relative_stop() {
    use bilevel::problems::cleaning::CleaningLoss;
    let ov = Overrides {
        loss: Some(CleaningLoss::SoftmaxCrossEntropy),
        ..Overrides::default()
    };
    let (p, r) = Defaults::build(mixed_clusters(35), &ov).unwrap();
    assert!(
        r.exact_v,
        "softmax with the rule's ridge has the Newton-CG v block"
    );
    assert_eq!(r.grad_u_rel_tol, Some(0.5));
    let o = run_rule(&p, &r);
    assert!(
        matches!(&o.status, bilevel::Status::Converged(w) if w.contains("grad_u")),
        "{:?}",
        o.status
    );
    let (_, recall, f1) = p.cleaning_scores(&o.u);
    assert!(
        f1 >= 0.85 && recall >= 0.8,
        "softmax under the rule: F1 {f1:.3}, recall {recall:.3} after {} iterations",
        o.iterations
    );
}

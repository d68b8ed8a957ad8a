//! Precision and recall of `farm_suspected` on a simulated population (small
//! and fast here; the full-size figures are in BENCHMARKS.md).

use tether_risk::simulate::{SimConfig, Simulation};

#[test]
fn farm_detection_meets_precision_and_recall_targets() {
    let workers = std::env::var("TETHER_SIM_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_500);
    let sim = Simulation::new(SimConfig { workers, days: 10, seed: 11, farm_share: 0.03 });
    let eval = sim.evaluate().expect("the simulation's configuration is valid");
    eprintln!(
        "workers {} events {} flags {}: tp {} fp {} fn {} tn {}; precision {:.3} recall {:.3} fpr {:.4}; false positives by category {:?}",
        sim.workers(),
        eval.events,
        eval.flags,
        eval.true_positives,
        eval.false_positives,
        eval.false_negatives,
        eval.true_negatives,
        eval.precision(),
        eval.recall(),
        eval.false_positive_rate(),
        eval.false_positives_by_category,
    );
    assert!(eval.true_positives > 20, "the population must contain farms");
    assert!(eval.precision() >= 0.95, "precision {:.3} below 0.95", eval.precision());
    assert!(eval.recall() >= 0.90, "recall {:.3} below 0.90", eval.recall());
    assert!(eval.false_positive_rate() <= 0.005, "false-positive rate {:.4}", eval.false_positive_rate());
}

#[test]
fn the_simulation_is_deterministic() {
    let cfg = SimConfig { workers: 300, days: 3, seed: 5, farm_share: 0.05 };
    let collect = || {
        let mut lines = Vec::new();
        Simulation::new(cfg.clone()).events(|e| lines.push(tether_risk::simulate::event_json(&e).to_string()));
        lines
    };
    let (a, b) = (collect(), collect());
    assert!(a.len() > 1000);
    assert_eq!(a, b);
}

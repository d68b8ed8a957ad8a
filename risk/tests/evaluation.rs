//! Precision and recall of `farm_suspected` on a simulated population (small
//! and fast here; the full-size figures over several seeds are in BENCHMARKS.md).

use tether_risk::simulate::{Evaluation, SimConfig, Simulation};

fn report(sim: &Simulation, eval: &Evaluation) {
    eprintln!(
        "workers {} events {} flags {}: tp {} fp {} fn {} tn {}; precision {:.3} recall {:.3}; \
         honest denied {:.4}, farm denied {:.3}",
        sim.workers(),
        eval.events,
        eval.flags,
        eval.true_positives,
        eval.false_positives,
        eval.false_negatives,
        eval.true_negatives,
        eval.precision(),
        eval.recall(),
        eval.honest_denied(),
        eval.farm_denied(),
    );
    for (style, c) in &eval.by_style {
        eprintln!("  farm {style:16} devices {:5} suspected {:5} denied {:5}", c.devices, c.suspected, c.denied);
    }
    for (kind, c) in &eval.by_category {
        eprintln!("  honest {kind:14} devices {:5} suspected {:5} denied {:5}", c.devices, c.suspected, c.denied);
    }
}

#[test]
fn farm_detection_meets_precision_and_recall_targets() {
    let workers = std::env::var("TETHER_SIM_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_500);
    let seed = std::env::var("TETHER_SIM_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(11);
    let sim = Simulation::new(SimConfig { workers, days: 14, seed, farm_share: 0.03 });
    let eval = sim.evaluate().expect("the simulation's configuration is valid");
    report(&sim, &eval);
    // Regression guards on one seed; the targets (precision 0.97, recall 0.95) are
    // measured over ten seeds in BENCHMARKS.md (co-living residents who did not leave the line
    // in their first week and a half, and reshipped laptops that never leak, are what is left).
    assert!(eval.true_positives > 20, "the population must contain farms");
    assert!(eval.precision() >= 0.95, "precision {:.3} below 0.95", eval.precision());
    assert!(eval.recall() >= 0.90, "recall {:.3} below 0.90", eval.recall());
    assert!(eval.honest_denied() <= 0.005, "honest workers denied {:.4}", eval.honest_denied());
    assert!(eval.farm_denied() >= 0.95, "farm laptops denied {:.3}", eval.farm_denied());
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

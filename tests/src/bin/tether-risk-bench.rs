//! Risk engine evaluation and event-log generator.
//!
//! `tether-risk-bench [--workers N] [--days D] [--seed S] [--write-events FILE]`
//! simulates a population (see `tether_risk::simulate`), runs the engine over
//! it and prints precision, recall and the false-positive rate of
//! `farm_suspected`, and the engine's in-process throughput. With
//! `--write-events` it also writes the event log as JSON Lines for
//! `tether analyze`.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use tether_risk::simulate::{SimConfig, Simulation, event_json};

fn main() -> anyhow::Result<()> {
    let mut cfg = SimConfig::default();
    let mut write = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--workers" => cfg.workers = value()?.parse()?,
            "--days" => cfg.days = value()?.parse()?,
            "--seed" => cfg.seed = value()?.parse()?,
            "--farm-share" => cfg.farm_share = value()?.parse()?,
            "--write-events" => write = Some(value()?),
            other => bail!("unknown argument {other}; see the file's header for usage"),
        }
    }
    let sim = Simulation::new(cfg.clone());
    if let Some(path) = write {
        let file = std::fs::File::create(&path).with_context(|| format!("cannot create {path}"))?;
        let mut out = std::io::BufWriter::new(file);
        let mut failed = None;
        let mut n = 0u64;
        sim.events(|e| {
            n += 1;
            if failed.is_none()
                && let Err(err) = writeln!(out, "{}", event_json(&e))
            {
                failed = Some(err);
            }
        });
        if let Some(err) = failed {
            return Err(err).context("cannot write the event log");
        }
        out.flush()?;
        println!("wrote {n} events to {path}");
    }
    let started = Instant::now();
    let eval = sim.evaluate().map_err(anyhow::Error::msg)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "workers {} days {} seed {}: {} events, {} flags, {:.0} events/s (simulation + engine, in process)",
        sim.workers(),
        cfg.days,
        cfg.seed,
        eval.events,
        eval.flags,
        eval.events as f64 / secs
    );
    println!(
        "farm_suspected: tp {} fp {} fn {} (of which silent {}) tn {}",
        eval.true_positives, eval.false_positives, eval.false_negatives, eval.missed_silent, eval.true_negatives
    );
    println!(
        "precision {:.3}  recall {:.3}  false-positive rate {:.4}  false positives by category {:?}",
        eval.precision(),
        eval.recall(),
        eval.false_positive_rate(),
        eval.false_positives_by_category
    );
    Ok(())
}

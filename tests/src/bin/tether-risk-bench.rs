//! Risk engine evaluation and event-log generator.
//!
//! `tether-risk-bench [--workers N] [--days D] [--seed S] [--seeds K] [--farm-share F] [--write-events FILE]`
//! simulates a population (see `tether_risk::simulate`) for each of the seeds
//! S..S+K-1, runs the engine over it and prints precision and recall of
//! `farm_suspected` per farm style, false positives and access-denying (`high`)
//! flags per honest kind, the totals over all seeds as Markdown tables, and the
//! engine's in-process throughput. With `--write-events` it also writes the
//! (first seed's) event log as JSON Lines for `tether analyze`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use tether_risk::simulate::{Counts, Evaluation, SimConfig, Simulation, event_json};

fn main() -> anyhow::Result<()> {
    let mut cfg = SimConfig::default();
    let mut seeds = 1u64;
    let mut write = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--workers" => cfg.workers = value()?.parse()?,
            "--days" => cfg.days = value()?.parse()?,
            "--seed" => cfg.seed = value()?.parse()?,
            "--seeds" => seeds = value()?.parse()?,
            "--farm-share" => cfg.farm_share = value()?.parse()?,
            "--write-events" => write = Some(value()?),
            other => bail!("unknown argument {other}; see the file's header for usage"),
        }
    }
    if let Some(path) = write {
        write_events(&Simulation::new(cfg.clone()), &path)?;
    }
    let mut total = Evaluation::default();
    let first = cfg.seed;
    for seed in first..first.saturating_add(seeds.max(1)) {
        let sim = Simulation::new(SimConfig { seed, ..cfg.clone() });
        let started = Instant::now();
        let eval = sim.evaluate().map_err(anyhow::Error::msg)?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "seed {seed}: workers {} days {}: {} events, {} flags, {:.0} events/s (simulation + engine, in process); \
             farm_suspected tp {} fp {} fn {}: precision {:.3} recall {:.3}; honest denied {:.4}, farm denied {:.3}",
            sim.workers(),
            cfg.days,
            eval.events,
            eval.flags,
            eval.events as f64 / secs,
            eval.true_positives,
            eval.false_positives,
            eval.false_negatives,
            eval.precision(),
            eval.recall(),
            eval.honest_denied(),
            eval.farm_denied(),
        );
        merge(&mut total, &eval);
    }
    println!(
        "\nall seeds: precision {:.3} recall {:.3} (tp {} fp {} fn {} tn {}); honest workers denied {:.4}; \
         farm laptops denied {:.3}\n",
        total.precision(),
        total.recall(),
        total.true_positives,
        total.false_positives,
        total.false_negatives,
        total.true_negatives,
        total.honest_denied(),
        total.farm_denied()
    );
    println!("| farm style | laptops | farm_suspected (recall) | denied (any high flag) |\n|---|---|---|---|");
    for (style, c) in &total.by_style {
        println!(
            "| {style} | {} | {} ({:.3}) | {} ({:.3}) |",
            c.devices,
            c.suspected,
            share(c.suspected, c),
            c.denied,
            share(c.denied, c)
        );
    }
    println!(
        "\n| honest kind | workers | farm_suspected (false positives) | denied (any high flag) |\n|---|---|---|---|"
    );
    for (kind, c) in &total.by_category {
        println!("| {kind} | {} | {} | {} ({:.4}) |", c.devices, c.suspected, c.denied, share(c.denied, c));
    }
    Ok(())
}

fn share(n: u64, c: &Counts) -> f64 {
    if c.devices == 0 { 0.0 } else { n as f64 / c.devices as f64 }
}

fn merge(total: &mut Evaluation, eval: &Evaluation) {
    total.events += eval.events;
    total.flags += eval.flags;
    total.true_positives += eval.true_positives;
    total.false_positives += eval.false_positives;
    total.false_negatives += eval.false_negatives;
    total.true_negatives += eval.true_negatives;
    let add = |into: &mut BTreeMap<&'static str, Counts>, from: &BTreeMap<&'static str, Counts>| {
        for (k, c) in from {
            into.entry(k).or_default().merge(c);
        }
    };
    add(&mut total.by_style, &eval.by_style);
    add(&mut total.by_category, &eval.by_category);
}

fn write_events(sim: &Simulation, path: &str) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?;
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
    Ok(())
}

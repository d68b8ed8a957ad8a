//! `tether analyze`: replays an event log through the risk engine the service
//! runs (`tether_risk`) and prints flags, then one summary per device, as
//! JSON Lines. Offline: no server, no network.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use clap::Args;
use tether_risk::Event;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Event log: JSON Lines ordered by time (`-` for stdin).
    #[arg(long, value_name = "FILE|-")]
    pub events: String,
    /// Risk configuration (TOML, or JSON when it starts with `{`); MMDB paths in it are
    /// relative to its directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Exit 0 when the log was read (malformed lines are reported and skipped),
/// 2 when it or the configuration could not be read.
pub fn run(args: AnalyzeArgs) -> i32 {
    match analyze(&args) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            2
        }
    }
}

/// Parsed events travel from the reading thread to the engine in batches of this many, so
/// the hand-off costs little per event.
const BATCH: usize = 1024;
/// Batches in flight at most: bounds the memory the reader can run ahead by.
const BATCHES_IN_FLIGHT: usize = 8;

/// What the reading thread hands the engine: parsed events in log order, or why reading stopped.
type Batch = Result<Vec<Event>, String>;

fn analyze(args: &AnalyzeArgs) -> Result<(), String> {
    let mut engine = tether_risk::load_engine(args.config.as_deref(), |path| std::fs::read(path))?;
    if !engine.geo_enabled() {
        eprintln!("note: no IP database configured: geo signals use only the events' `geo`");
    }
    let input: Box<dyn Read + Send> = if args.events == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(&args.events).map_err(|e| format!("cannot read the event log {}: {e}", args.events))?)
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut output = Vec::new();
    // Parsing is a third of the work and independent of the engine's state, so it runs on a
    // thread of its own, a bounded queue ahead of the engine; the engine still sees every event
    // in the log's order, so the output is the same as reading on one thread.
    let (batches, parsed) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    let (spent_tx, spent) = std::sync::mpsc::sync_channel::<Vec<Event>>(BATCHES_IN_FLIGHT);
    std::thread::scope(|scope| {
        scope.spawn(move || read_events(input, &batches, &spent));
        for batch in parsed {
            let batch = batch?;
            for event in &batch {
                write_all(&mut out, &mut output, engine.process(event))?;
            }
            let _ = spent_tx.try_send(batch);
        }
        Ok::<(), String>(())
    })?;
    write_all(&mut out, &mut output, engine.finish())?;
    write_all(&mut out, &mut output, engine.summaries())?;
    out.flush().map_err(|e| format!("cannot write the output: {e}"))
}

/// Reads and parses the log, reporting and skipping malformed lines, and sends the events in
/// batches. Stops early when the engine has stopped listening (it failed to write).
fn read_events(
    input: Box<dyn Read + Send>,
    batches: &std::sync::mpsc::SyncSender<Batch>,
    spent: &std::sync::mpsc::Receiver<Vec<Event>>,
) {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        line.clear();
        let read = match reader.read_until(b'\n', &mut line) {
            Ok(read) => read,
            Err(e) => {
                let _ = batches.send(Ok(batch));
                let _ = batches.send(Err(format!("cannot read the event log at line {}: {e}", number + 1)));
                return;
            }
        };
        if read == 0 {
            break;
        }
        number += 1;
        let Ok(text) = std::str::from_utf8(&line) else {
            eprintln!("line {number}: skipped: not UTF-8");
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match Event::from_json(text) {
            Ok(event) => batch.push(event),
            Err(error) => eprintln!("line {number}: skipped: {error}"),
        }
        while let Ok(old) = spent.try_recv() {
            drop(old);
        }
        if batch.len() == BATCH && batches.send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))).is_err() {
            return;
        }
    }
    let _ = batches.send(Ok(batch));
}

/// Writes each item as one line. A line is serialized into `line` (reused, so no allocation
/// once it has grown to the longest line) and handed to `out` in one write: serde_json writes
/// a value in many small pieces, and each piece costs far less appended to a `Vec` than
/// passed through a `BufWriter`.
fn write_all<T: serde::Serialize>(
    out: &mut impl Write,
    line: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
) -> Result<(), String> {
    for item in items {
        line.clear();
        serde_json::to_writer(&mut *line, &item).map_err(|e| format!("cannot write the output: {e}"))?;
        line.push(b'\n');
        out.write_all(line).map_err(|e| format!("cannot write the output: {e}"))?;
    }
    Ok(())
}

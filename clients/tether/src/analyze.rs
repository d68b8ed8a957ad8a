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

fn analyze(args: &AnalyzeArgs) -> Result<(), String> {
    let mut engine = tether_risk::load_engine(args.config.as_deref(), |path| std::fs::read(path))?;
    if !engine.geo_enabled() {
        eprintln!("note: no IP database configured: geo signals use only the events' `geo`");
    }
    let input: Box<dyn Read> = if args.events == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(&args.events).map_err(|e| format!("cannot read the event log {}: {e}", args.events))?)
    };
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = Vec::new();
    let mut output = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read the event log at line {}: {e}", number + 1))?;
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
            Ok(event) => write_all(&mut out, &mut output, engine.process(&event))?,
            Err(error) => eprintln!("line {number}: skipped: {error}"),
        }
    }
    write_all(&mut out, &mut output, engine.finish())?;
    write_all(&mut out, &mut output, engine.summaries())?;
    out.flush().map_err(|e| format!("cannot write the output: {e}"))
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

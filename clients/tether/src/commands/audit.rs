//! `tether audit export|verify`: the tenant's tamper-evident audit log.
//!
//! Verification runs here, on the client, with the same hash function the
//! server writes with (`tetherd::domain::audit`), so a tampered server database or a
//! tampered export file is caught without trusting the server's word.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use tether_attestation::audit_chain::{AuditRecord, GENESIS_HASH, verify_chain};
use tether_proto::v1::{AuditEntry, ListAuditLogRequest};

use super::Ctx;
use crate::output::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print every entry as JSON Lines, oldest first.
    Export,
    /// Check the hash chain; exit 0 intact, 1 broken (names the first broken entry), 2 error.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify an export (JSON Lines from `tether audit export`) instead of the server's log.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The head hash recorded at an earlier verification: also proves nothing was cut from the end.
    #[arg(long, value_name = "HASH")]
    pub expect_head: Option<String>,
}

fn record(e: AuditEntry) -> AuditRecord {
    AuditRecord {
        tenant_id: e.tenant_id,
        seq: e.seq,
        at_ms: e.at_ms,
        actor: e.actor,
        action: e.action,
        target: e.target,
        details_json: e.details_json,
        prev_hash: e.prev_hash,
        hash: e.hash,
    }
}

/// Every entry plus the server's head, read after the entries it covers.
async fn fetch_all(ctx: &Ctx) -> anyhow::Result<(Vec<AuditRecord>, i64, String)> {
    let mut client = ctx.report().await?;
    let mut entries: Vec<AuditRecord> = Vec::new();
    loop {
        let after_seq = entries.last().map_or(0, |e| e.seq);
        let page = client.list_audit_log(ListAuditLogRequest { after_seq, page_size: 5000 }).await?.into_inner();
        if page.entries.is_empty() {
            return Ok((entries, page.head_seq, page.head_hash));
        }
        let before = entries.len();
        entries.extend(page.entries.into_iter().map(record));
        // A server that returns entries it was not asked for would loop forever.
        if entries.last().map_or(0, |e| e.seq) <= after_seq || entries.len() == before {
            anyhow::bail!("the server returned audit entries out of order");
        }
    }
}

fn read_file(path: &PathBuf) -> anyhow::Result<Vec<AuditRecord>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut entries = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: AuditRecord = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not an audit entry", path.display(), index + 1))?;
        entries.push(entry);
    }
    Ok(entries)
}

pub async fn run(ctx: &Ctx, command: AuditCommand) -> anyhow::Result<i32> {
    match command {
        AuditCommand::Export => {
            let (entries, _, _) = fetch_all(ctx).await?;
            let mut out = std::io::stdout().lock();
            for entry in &entries {
                writeln!(out, "{}", serde_json::to_string(entry)?)?;
            }
            Ok(0)
        }
        AuditCommand::Verify(args) => {
            let (entries, server_head) = match &args.file {
                Some(path) => (read_file(path)?, None),
                None => {
                    let (entries, seq, hash) = fetch_all(ctx).await?;
                    (entries, Some((seq, hash)))
                }
            };
            let outcome = check(&entries, server_head, args.expect_head.as_deref());
            report(ctx.output, &entries, &outcome)
        }
    }
}

/// The verdict: Ok((head seq, head hash)) or Err((first broken seq, why)).
type Outcome = Result<(i64, String), (i64, String)>;

fn check(entries: &[AuditRecord], server_head: Option<(i64, String)>, expect_head: Option<&str>) -> Outcome {
    let (seq, hash) = verify_chain(entries, 0, GENESIS_HASH).map_err(|b| (b.seq, b.reason))?;
    if let Some((head_seq, head_hash)) = server_head
        && (head_seq != seq || head_hash != hash)
    {
        return Err((
            seq + 1,
            format!(
                "the server's chain head is entry {head_seq} ({head_hash}) but the log ends at entry {seq}: entries were removed"
            ),
        ));
    }
    if let Some(expected) = expect_head
        && !entries.iter().any(|e| e.hash == expected)
        && expected != GENESIS_HASH
    {
        return Err((
            seq + 1,
            format!("the expected head {expected} is not in the chain: entries were removed or rewritten"),
        ));
    }
    Ok((seq, hash))
}

fn report(format: OutputFormat, entries: &[AuditRecord], outcome: &Outcome) -> anyhow::Result<i32> {
    let json = match outcome {
        Ok((seq, hash)) => serde_json::json!({
            "verified": true, "entries": entries.len(), "head_seq": seq, "head_hash": hash,
            "broken_seq": null, "error": null,
        }),
        Err((seq, reason)) => serde_json::json!({
            "verified": false, "entries": entries.len(), "head_seq": null, "head_hash": null,
            "broken_seq": seq, "error": reason,
        }),
    };
    match format {
        OutputFormat::Json => println!("{json}"),
        OutputFormat::Csv => anyhow::bail!("--output csv is available for `tether report` only; use table or json"),
        OutputFormat::Table => match outcome {
            Ok((seq, hash)) => println!("audit log intact: {} entries, head {seq} {hash}", entries.len()),
            Err((seq, reason)) => println!("audit log BROKEN at entry {seq}: {reason}"),
        },
    }
    Ok(if outcome.is_ok() { 0 } else { 1 })
}

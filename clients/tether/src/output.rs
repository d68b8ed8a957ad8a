//! Rendering: `--output table|json`, aligned plain-text tables, and the
//! conversions every view shares (times, enum names).

use std::fmt::Write as _;

use clap::ValueEnum;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The `--output` format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document per command, for scripts.
    Json,
    /// Comma-separated values with a header row (`tether report` only).
    Csv,
}

/// Something a command prints: as JSON (the serde shape) or as text.
pub trait Render: Serialize {
    /// The human-readable form, ending in a newline.
    fn to_text(&self) -> String;
}

/// Print `value` on stdout in the chosen format.
pub fn emit<T: Render>(format: OutputFormat, value: &T) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", to_json(value)?),
        OutputFormat::Table => print!("{}", value.to_text()),
        OutputFormat::Csv => anyhow::bail!("--output csv is available for `tether report` only; use table or json"),
    }
    Ok(())
}

/// Pretty JSON for `value`.
pub fn to_json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// Epoch milliseconds as RFC 3339 (UTC, millisecond precision when needed);
/// `None` for 0, which the API uses for "never". Milliseconds outside the
/// representable range are kept as a number in a string rather than lost.
pub fn rfc3339(ms: i64) -> Option<String> {
    if ms == 0 {
        return None;
    }
    let formatted = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok());
    Some(formatted.unwrap_or_else(|| ms.to_string()))
}

/// A time cell for tables: RFC 3339 to the second, or "-".
pub fn time_cell(time: &Option<String>) -> String {
    match time {
        None => "-".to_string(),
        Some(text) => match (text.find('.'), text.ends_with('Z')) {
            (Some(dot), true) => format!("{}Z", &text[..dot]),
            _ => text.clone(),
        },
    }
}

/// "ROLE_ADMIN" with prefix "ROLE_" -> "admin".
pub fn enum_name(proto_name: &str, prefix: &str) -> String {
    proto_name.strip_prefix(prefix).unwrap_or(proto_name).to_ascii_lowercase()
}

/// A whole number of seconds as "1h 30m (5400s)"; "-" for 0 ("unset").
pub fn seconds_cell(seconds: u64) -> String {
    if seconds == 0 {
        return "-".to_string();
    }
    let human = humantime::format_duration(std::time::Duration::from_secs(seconds));
    format!("{human} ({seconds}s)")
}

/// Server-supplied text made safe for a terminal: control characters (an
/// escape sequence in a gateway id, a newline in a detail) are escaped.
pub fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Plain aligned columns: a header row, then one line per row, two spaces
/// between columns. Empty cells show as "-".
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// Add a row; missing cells are blank, extra cells dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .map(|c| {
                let c = clean(c.as_ref());
                if c.is_empty() { "-".to_string() } else { c }
            })
            .take(self.headers.len())
            .collect();
        row.resize(self.headers.len(), "-".to_string());
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, (cell, width)) in line.iter().zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let _ = write!(text, "{cell:<width$}");
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `name:  value` lines with the values aligned. Empty values show as "-".
#[derive(Debug, Clone, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.0.push((name.to_string(), clean(value.as_ref())));
        self
    }

    pub fn render(&self) -> String {
        let width = self.0.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0) + 1;
        let mut out = String::new();
        for (name, value) in &self.0 {
            let value = if value.is_empty() { "-" } else { value };
            let label = format!("{name}:");
            let _ = writeln!(out, "{label:<width$}  {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ms_is_none() {
        assert_eq!(rfc3339(0), None);
    }

    #[test]
    fn ms_format_as_rfc3339_utc() {
        assert_eq!(rfc3339(1_700_000_000_000).as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(rfc3339(1_700_000_000_123).as_deref(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(rfc3339(-1_000).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(rfc3339(i64::MAX).as_deref(), Some(i64::MAX.to_string().as_str()));
    }

    #[test]
    fn time_cells_drop_fractions() {
        assert_eq!(time_cell(&rfc3339(1_700_000_000_123)), "2023-11-14T22:13:20Z");
        assert_eq!(time_cell(&None), "-");
    }

    #[test]
    fn enum_names() {
        assert_eq!(enum_name("ROLE_ADMIN", "ROLE_"), "admin");
        assert_eq!(enum_name("PRESENCE_OUTCOME_CLONE_SUSPECTED", "PRESENCE_OUTCOME_"), "clone_suspected");
    }

    #[test]
    fn seconds() {
        assert_eq!(seconds_cell(0), "-");
        assert_eq!(seconds_cell(3600), "1h (3600s)");
        assert_eq!(seconds_cell(5400), "1h 30m (5400s)");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(clean("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(&["ID", "NAME", "ROLE"]);
        table.row(["k1", "ci", "admin"]);
        table.row(["key-22", "", "gateway"]);
        assert_eq!(
            table.render(),
            "ID      NAME  ROLE\n\
             k1      ci    admin\n\
             key-22  -     gateway\n"
        );
    }

    #[test]
    fn table_pads_short_rows() {
        let mut table = Table::new(&["A", "B"]);
        table.row(["x"]);
        assert_eq!(table.render(), "A  B\nx  -\n");
    }

    #[test]
    fn fields_align_values() {
        let text = Fields::new().add("id", "t1").add("created at", "").render();
        assert_eq!(text, "id:          t1\ncreated at:  -\n");
    }
}

//! Typed report inputs. Every parser names the field it refused, so a
//! caller (gRPC, the console's query strings, the CLI) can tell the user
//! exactly which filter to fix.

use crate::domain::error::{ApiError, ApiResult};
use crate::util::b64url;
use serde::Serialize;
use tether_risk::FlagKind;

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

/// Kinds raised outside the risk engine (by TPM verification).
const EXTRA_KINDS: &[&str] = &["pcr_policy_mismatch"];

/// A period: since inclusive, until exclusive; 0 = unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TimeWindow {
    pub since_ms: i64,
    pub until_ms: i64,
}

impl TimeWindow {
    pub fn new(since_ms: i64, until_ms: i64) -> ApiResult<TimeWindow> {
        if since_ms < 0 {
            return Err(ApiError::invalid("range.since_ms must not be negative"));
        }
        if until_ms < 0 {
            return Err(ApiError::invalid("range.until_ms must not be negative"));
        }
        if until_ms != 0 && since_ms >= until_ms {
            return Err(ApiError::invalid(format!(
                "range.since_ms ({since_ms}) must be before range.until_ms ({until_ms})"
            )));
        }
        Ok(TimeWindow { since_ms, until_ms })
    }

    pub fn all() -> TimeWindow {
        TimeWindow::default()
    }

    /// The upper bound as a number usable in `at_ms < $n`.
    pub(crate) fn until_or_max(&self) -> i64 {
        if self.until_ms == 0 { i64::MAX } else { self.until_ms }
    }
}

/// Keyset position in a newest-first listing: the last row returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at_ms: i64,
    pub id: String,
}

impl Cursor {
    /// The opaque token handed to clients.
    pub fn token(&self) -> String {
        b64url(format!("{}:{}", self.at_ms, self.id).as_bytes())
    }

    pub fn parse(token: &str) -> ApiResult<Cursor> {
        let invalid = || ApiError::invalid("page.page_token is not a token this server issued; start without one");
        let bytes = tether_attestation::b64url_decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (at, id) = text.split_once(':').ok_or_else(invalid)?;
        let at_ms: i64 = at.parse().map_err(|_| invalid())?;
        if at_ms < 0 || id.is_empty() {
            return Err(invalid());
        }
        Ok(Cursor { at_ms, id: id.to_string() })
    }
}

/// Which page: its size and where the previous one ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: i64,
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// `page_size` 0 means the default; anything above the maximum is refused
    /// rather than silently cut, so a script never mistakes a short page for the end.
    pub fn parse(page_size: u32, page_token: &str) -> ApiResult<PageRequest> {
        let size = match i64::from(page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(ApiError::invalid(format!(
                    "page.page_size: {n} is out of range (1 to {MAX_PAGE_SIZE}, 0 = {DEFAULT_PAGE_SIZE})"
                )));
            }
            n => n,
        };
        let after = match page_token.trim() {
            "" => None,
            token => Some(Cursor::parse(token)?),
        };
        Ok(PageRequest { size, after })
    }

    pub fn first(size: i64) -> PageRequest {
        PageRequest { size: size.clamp(1, MAX_PAGE_SIZE), after: None }
    }

    /// (at_ms, id) to bind in `(at < $a OR (at = $a AND id < $b))`.
    pub(crate) fn bound(&self) -> (i64, String) {
        match &self.after {
            Some(c) => (c.at_ms, c.id.clone()),
            None => (i64::MAX, String::new()),
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, Serialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// The next token when the page came back full.
pub(crate) fn next_token(last: Option<(i64, &str)>, returned: usize, size: i64) -> String {
    match last {
        Some((at_ms, id)) if returned as i64 >= size => Cursor { at_ms, id: id.to_string() }.token(),
        _ => String::new(),
    }
}

macro_rules! named_enum {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the lowercase name; the error names `field` and the accepted values.
            pub fn parse(field: &str, text: &str) -> ApiResult<$name> {
                let wanted = text.trim().to_ascii_lowercase().replace('-', "_");
                $name::ALL.iter().copied().find(|v| v.as_str() == wanted).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    ApiError::invalid(format!("{field}: {text:?} is not {} ({})", $what, names.join(", ")))
                })
            }
        }
    };
}

named_enum!(Severity, "a flag severity", { Info => "info", Review => "review", High => "high" });
named_enum!(FlagStatus, "a flag status", { Open => "open", Acknowledged => "acknowledged", Resolved => "resolved" });
named_enum!(FailureOutcome, "a presence failure outcome", {
    Missed => "missed", Failed => "failed", Replayed => "replayed", Late => "late", CloneSuspected => "clone_suspected",
});
named_enum!(SessionDecision, "a decision", { Allow => "allow", Deny => "deny" });

/// Every kind of flag tetherd raises.
pub fn known_kinds() -> Vec<&'static str> {
    FlagKind::ALL.iter().map(|k| k.as_str()).chain(EXTRA_KINDS.iter().copied()).collect()
}

/// A flag kind by name; unknown names are refused (a typo must not read as "no flags").
pub fn parse_kind(field: &str, text: &str) -> ApiResult<String> {
    let wanted = text.trim().to_ascii_lowercase().replace('-', "_");
    let kinds = known_kinds();
    kinds
        .iter()
        .find(|k| **k == wanted)
        .map(|k| k.to_string())
        .ok_or_else(|| ApiError::invalid(format!("{field}: {text:?} is not a flag kind ({})", kinds.join(", "))))
}

/// `,a,b,` for a `$n LIKE '%,' || column || ',%'` membership test; "" = any.
pub(crate) fn member_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut list = String::from(",");
    for name in names {
        list.push_str(name);
        list.push(',');
    }
    if list == "," { String::new() } else { list }
}

#[derive(Debug, Clone, Default)]
pub struct FlagFilter {
    pub window: TimeWindow,
    pub kinds: Vec<String>,
    pub severities: Vec<Severity>,
    pub statuses: Vec<FlagStatus>,
    pub worker_external_id: String,
    pub device_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct FailureFilter {
    pub window: TimeWindow,
    /// Empty = every failure outcome.
    pub outcomes: Vec<FailureOutcome>,
    pub worker_external_id: String,
    pub device_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub window: TimeWindow,
    pub decision: Option<SessionDecision>,
    pub worker_external_id: String,
    pub device_id: String,
    /// Only sessions monitor mode allowed despite a tier denial.
    pub would_deny_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: ApiError) -> String {
        e.to_string()
    }

    #[test]
    fn tokens_round_trip_and_garbage_names_the_field() {
        let c = Cursor { at_ms: 1_700_000_000_000, id: "flg_1".into() };
        assert_eq!(Cursor::parse(&c.token()).unwrap(), c);
        for bad in ["%%%", "bm90LWEtdG9rZW4", &b64url(b"x:flg"), &b64url(b"-1:flg"), &b64url(b"5:")] {
            assert!(message(Cursor::parse(bad).unwrap_err()).starts_with("page.page_token"), "{bad}");
        }
    }

    #[test]
    fn page_sizes() {
        assert_eq!(PageRequest::parse(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::parse(500, "").unwrap().size, 500);
        assert!(message(PageRequest::parse(501, "").unwrap_err()).starts_with("page.page_size"));
    }

    #[test]
    fn windows() {
        assert!(TimeWindow::new(0, 0).is_ok());
        assert!(message(TimeWindow::new(10, 5).unwrap_err()).starts_with("range.since_ms"));
        assert!(message(TimeWindow::new(10, 10).unwrap_err()).starts_with("range.since_ms"));
        assert!(message(TimeWindow::new(-1, 0).unwrap_err()).starts_with("range.since_ms"));
    }

    #[test]
    fn names() {
        assert_eq!(Severity::parse("severities", "HIGH").unwrap(), Severity::High);
        assert_eq!(FailureOutcome::parse("outcomes", "clone-suspected").unwrap(), FailureOutcome::CloneSuspected);
        assert!(message(FlagStatus::parse("statuses", "closed").unwrap_err()).starts_with("statuses: \"closed\""));
        assert_eq!(parse_kind("kinds", "shared_egress").unwrap(), "shared_egress");
        assert_eq!(parse_kind("kinds", "pcr_policy_mismatch").unwrap(), "pcr_policy_mismatch");
        assert!(message(parse_kind("kinds", "laptop_farm").unwrap_err()).starts_with("kinds: \"laptop_farm\""));
        assert_eq!(member_list(["a", "b"]), ",a,b,");
        assert_eq!(member_list([]), "");
    }
}

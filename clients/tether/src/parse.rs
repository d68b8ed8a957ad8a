//! Argument parsers: durations, time bounds, AAGUID lists.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A humantime duration ("90s", "5m", "2h", "7d") as whole seconds.
pub fn duration_secs(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (try 90s, 5m, 2h or 7d)"))?;
    if duration.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds".into());
    }
    Ok(duration.as_secs())
}

/// Like [`duration_secs`], but zero is refused.
pub fn positive_duration_secs(text: &str) -> Result<u64, String> {
    match duration_secs(text)? {
        0 => Err("must be greater than zero".into()),
        secs => Ok(secs),
    }
}

/// A positive humantime duration.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (try 10s or 1m)"))?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

/// A time bound for reports: RFC 3339 (`2025-06-01T00:00:00Z`), or a
/// duration meaning that long ago (`7d`), resolved against `now`.
/// Returns epoch milliseconds.
pub fn time_bound_at(text: &str, now: OffsetDateTime) -> Result<i64, String> {
    let text = text.trim();
    let instant = match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(instant) => instant,
        Err(rfc_error) => {
            let ago = humantime::parse_duration(text).map_err(|_| {
                format!("expected an RFC 3339 time (2025-06-01T00:00:00Z) or a duration ago (7d): {rfc_error}")
            })?;
            let ago = time::Duration::try_from(ago).map_err(|e| e.to_string())?;
            now.checked_sub(ago).ok_or("duration reaches too far back")?
        }
    };
    let ms = instant.unix_timestamp_nanos() / 1_000_000;
    let ms = i64::try_from(ms).map_err(|_| "time out of range".to_string())?;
    if ms <= 0 {
        return Err("must be after 1970-01-01T00:00:00Z".into());
    }
    Ok(ms)
}

/// [`time_bound_at`] relative to the current time (clap value parser).
pub fn time_bound(text: &str) -> Result<i64, String> {
    time_bound_at(text, OffsetDateTime::now_utc())
}

/// A parsed `--allowed-aaguids` value (one argument holding the whole list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AaguidList(pub Vec<String>);

/// `--allowed-aaguids`: a comma-separated list of UUIDs, or `none` for an
/// empty list (any authenticator model). Returned lowercase hyphenated.
pub fn aaguid_list(text: &str) -> Result<AaguidList, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(AaguidList(Vec::new()));
    }
    if text.is_empty() {
        return Err("give UUIDs separated by commas, or none".into());
    }
    text.split(',')
        .map(|part| {
            let part = part.trim();
            uuid::Uuid::parse_str(part)
                .map(|u| u.hyphenated().to_string())
                .map_err(|e| format!("{part:?} is not a UUID: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(AaguidList)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations_in_seconds() {
        assert_eq!(duration_secs("90s"), Ok(90));
        assert_eq!(duration_secs("5m"), Ok(300));
        assert_eq!(duration_secs("2h"), Ok(7200));
        assert_eq!(duration_secs("7d"), Ok(604_800));
        assert_eq!(duration_secs("1h 30m"), Ok(5400));
        assert_eq!(duration_secs("0s"), Ok(0));
        assert!(duration_secs("1500ms").is_err());
        assert!(duration_secs("5").is_err());
        assert!(duration_secs("soon").is_err());
        assert!(positive_duration_secs("0s").is_err());
        assert_eq!(positive_duration_secs("24h"), Ok(86_400));
        assert_eq!(positive_duration("10s"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn time_bounds() {
        let now = datetime!(2025-06-08 12:00:00 UTC);
        assert_eq!(time_bound_at("7d", now), Ok(datetime!(2025-06-01 12:00:00 UTC).unix_timestamp() * 1000));
        assert_eq!(
            time_bound_at("2025-06-01T00:00:00Z", now),
            Ok(datetime!(2025-06-01 00:00:00 UTC).unix_timestamp() * 1000)
        );
        assert_eq!(
            time_bound_at("2025-06-01T02:00:00.250+02:00", now),
            Ok(datetime!(2025-06-01 00:00:00 UTC).unix_timestamp() * 1000 + 250)
        );
        assert!(time_bound_at("yesterday", now).is_err());
        assert!(time_bound_at("1970-01-01T00:00:00Z", now).is_err());
    }

    #[test]
    fn aaguids() {
        assert_eq!(aaguid_list("none"), Ok(AaguidList(vec![])));
        assert_eq!(
            aaguid_list("ADCE0002-35BC-C60A-648B-0B25F1F05503, 00000000-0000-0000-0000-000000000001"),
            Ok(AaguidList(vec![
                "adce0002-35bc-c60a-648b-0b25f1f05503".to_string(),
                "00000000-0000-0000-0000-000000000001".to_string()
            ]))
        );
        assert!(aaguid_list("").is_err());
        assert!(aaguid_list("abc").is_err());
        assert!(aaguid_list("adce0002-35bc-c60a-648b-0b25f1f05503,").is_err());
    }
}

//! Declared worker homes and working hours: validation and the proto form.

use crate::domain::error::{ApiError, ApiResult};
use crate::store::inventory::{Declared, Worker};
use tether_proto::v1 as pb;
use tether_risk::WorkingHours;

/// The declaration after applying `r` to what is stored: unset fields keep
/// their value, `clear_*` removes it. Every value is validated, naming the field.
pub(super) fn apply(existing: &Declared, r: &pb::UpsertWorkerRequest) -> ApiResult<Declared> {
    let mut next = existing.clone();
    if r.clear_home && r.home.is_some() {
        return Err(ApiError::invalid("give home or clear_home, not both"));
    }
    if r.clear_working_hours && r.working_hours.is_some() {
        return Err(ApiError::invalid("give working_hours or clear_working_hours, not both"));
    }
    if r.clear_home {
        next.home = None;
        next.home_country.clear();
    }
    if let Some(home) = &r.home {
        if !home.lat.is_finite() || !(-90.0..=90.0).contains(&home.lat) {
            return Err(ApiError::invalid(format!("home.lat must be a latitude from -90 to 90, not {}", home.lat)));
        }
        if !home.lon.is_finite() || !(-180.0..=180.0).contains(&home.lon) {
            return Err(ApiError::invalid(format!("home.lon must be a longitude from -180 to 180, not {}", home.lon)));
        }
        let country = home.country.trim();
        if !country.is_empty() && (country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic())) {
            return Err(ApiError::invalid(format!(
                "home.country must be an ISO 3166-1 alpha-2 code such as \"DE\", not {country:?}"
            )));
        }
        next.home = Some((home.lat, home.lon));
        next.home_country = country.to_ascii_uppercase();
    }
    if r.clear_working_hours {
        next.working_hours.clear();
        next.working_timezone.clear();
    }
    if let Some(hours) = &r.working_hours {
        let parsed = WorkingHours::parse(&hours.schedule, &hours.timezone)
            .map_err(|(field, why)| ApiError::invalid(format!("working_hours.{field}: {why}")))?;
        next.working_hours = parsed.schedule;
        next.working_timezone = parsed.timezone;
    }
    Ok(next)
}

pub(super) fn to_proto(w: Worker) -> pb::Worker {
    let d = w.declared;
    pb::Worker {
        external_id: w.external_id,
        display_name: w.display_name,
        created_at_ms: w.created_at_ms,
        home: d.home.map(|(lat, lon)| pb::WorkerHome { lat, lon, country: d.home_country.clone() }),
        working_hours: (!d.working_hours.is_empty())
            .then(|| pb::WorkingHours { schedule: d.working_hours.clone(), timezone: d.working_timezone.clone() }),
    }
}

/// The declaration for the audit entry.
pub(super) fn audit_json(d: &Declared) -> serde_json::Value {
    serde_json::json!({
        "home": d.home.map(|(lat, lon)| serde_json::json!({"lat": lat, "lon": lon, "country": d.home_country})),
        "working_hours": (!d.working_hours.is_empty())
            .then(|| serde_json::json!({"schedule": d.working_hours, "timezone": d.working_timezone})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(home: Option<pb::WorkerHome>, hours: Option<pb::WorkingHours>) -> pb::UpsertWorkerRequest {
        pb::UpsertWorkerRequest { home, working_hours: hours, ..Default::default() }
    }

    fn error(r: &pb::UpsertWorkerRequest) -> String {
        match apply(&Declared::default(), r) {
            Err(ApiError::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn values_are_validated_naming_the_field() {
        let home = |lat, lon, country: &str| Some(pb::WorkerHome { lat, lon, country: country.into() });
        assert!(error(&request(home(91.0, 0.0, ""), None)).starts_with("home.lat"));
        assert!(error(&request(home(f64::NAN, 0.0, ""), None)).starts_with("home.lat"));
        assert!(error(&request(home(0.0, 181.0, ""), None)).starts_with("home.lon"));
        assert!(error(&request(home(0.0, 0.0, "Germany"), None)).starts_with("home.country"));
        let hours = |s: &str, tz: &str| Some(pb::WorkingHours { schedule: s.into(), timezone: tz.into() });
        assert!(error(&request(None, hours("Mon-Fri 9-5", "UTC"))).starts_with("working_hours.schedule"));
        assert!(
            error(&request(None, hours("Mon-Fri 09:00-17:00", "Nowhere/City"))).starts_with("working_hours.timezone")
        );
        let both = pb::UpsertWorkerRequest { clear_home: true, home: home(1.0, 1.0, ""), ..Default::default() };
        assert!(error(&both).contains("not both"));
    }

    #[test]
    fn unset_fields_keep_their_value_and_clear_removes_it() {
        let r = request(
            Some(pb::WorkerHome { lat: 52.52, lon: 13.4, country: "de".into() }),
            Some(pb::WorkingHours { schedule: "Mon-Fri 09:00-17:00".into(), timezone: "Europe/Berlin".into() }),
        );
        let set = apply(&Declared::default(), &r).unwrap();
        assert_eq!(set.home, Some((52.52, 13.4)));
        assert_eq!(set.home_country, "DE");
        assert_eq!(apply(&set, &pb::UpsertWorkerRequest::default()).unwrap(), set);
        let cleared = apply(&set, &pb::UpsertWorkerRequest { clear_home: true, ..Default::default() }).unwrap();
        assert_eq!((cleared.home, cleared.working_hours.as_str()), (None, "Mon-Fri 09:00-17:00"));
    }
}

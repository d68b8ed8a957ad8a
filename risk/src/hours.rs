//! Declared working hours: days, a local time range and a time zone (an
//! IANA name from the bundled database, or a fixed UTC offset).

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};

use super::Millis;

/// `"Mon-Fri 09:00-17:00"` in a time zone. An end before the start runs past
/// midnight (a night shift belongs to the day it starts on).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkingHours {
    /// Monday = 0.
    days: [bool; 7],
    start_min: u16,
    end_min: u16,
    zone: TimeZone,
    /// The schedule and zone as given (normalized), for evidence and display.
    pub schedule: String,
    pub timezone: String,
}

impl WorkingHours {
    /// Parses a schedule and a zone; the error names which one is wrong and why.
    pub fn parse(schedule: &str, timezone: &str) -> Result<Self, (&'static str, String)> {
        let zone = parse_zone(timezone.trim()).map_err(|e| ("timezone", e))?;
        let (days_text, range) = schedule.trim().split_once(char::is_whitespace).ok_or((
            "schedule",
            format!("expected \"DAYS HH:MM-HH:MM\" such as \"Mon-Fri 09:00-17:00\", not {schedule:?}"),
        ))?;
        let days = parse_days(days_text).map_err(|e| ("schedule", e))?;
        let (start, end) = range.trim().split_once('-').ok_or(("schedule", format!("{range:?} is not HH:MM-HH:MM")))?;
        let start_min = parse_clock(start).map_err(|e| ("schedule", e))?;
        let end_min = parse_clock(end).map_err(|e| ("schedule", e))?;
        if start_min == end_min {
            return Err(("schedule", "the start and end times are equal".into()));
        }
        let schedule = format!("{} {}-{}", days_text.trim(), clock(start_min), clock(end_min));
        Ok(Self { days, start_min, end_min, zone, schedule, timezone: timezone.trim().to_string() })
    }

    /// Whether `at` falls inside these hours.
    pub fn contains(&self, at: Millis) -> bool {
        let Ok(ts) = Timestamp::from_millisecond(at) else { return false };
        let local = ts.to_zoned(self.zone.clone());
        let minute = u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        let today = usize::try_from(local.weekday().to_monday_zero_offset()).unwrap_or(0) % 7;
        if self.start_min < self.end_min {
            return self.days[today] && minute >= self.start_min && minute < self.end_min;
        }
        let yesterday = (today + 6) % 7;
        (self.days[today] && minute >= self.start_min) || (self.days[yesterday] && minute < self.end_min)
    }

    /// The UTC offset in effect at `at`, in seconds (for evidence).
    pub fn offset_seconds(&self, at: Millis) -> i32 {
        Timestamp::from_millisecond(at).map(|ts| self.zone.to_offset(ts).seconds()).unwrap_or(0)
    }
}

fn parse_zone(text: &str) -> Result<TimeZone, String> {
    if text.is_empty() {
        return Err("is required: an IANA name such as \"Europe/Berlin\" or an offset such as \"+05:30\"".into());
    }
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(rest) = text.strip_prefix(['+', '-']) {
        let sign = if text.starts_with('-') { -1 } else { 1 };
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let (Ok(h), Ok(m)) = (h.parse::<i32>(), m.parse::<i32>()) else {
            return Err(format!("{text:?} is not an offset such as \"+05:30\""));
        };
        if h > 14 || !(0..60).contains(&m) {
            return Err(format!("{text:?} is out of range (-14:00 to +14:00)"));
        }
        let offset = Offset::from_seconds(sign * (h * 3600 + m * 60)).map_err(|e| format!("{text:?}: {e}"))?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(text).map_err(|_| format!("{text:?} is not a known IANA time zone (such as \"Europe/Berlin\")"))
}

/// "Mon", "tue", "Wednesday", ...: at least three letters of a day's name.
fn day_index(name: &str) -> Result<usize, String> {
    const FULL: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    let lower = name.trim().to_ascii_lowercase();
    FULL.iter()
        .position(|day| lower.len() >= 3 && day.starts_with(&lower))
        .ok_or_else(|| format!("{name:?} is not a day (Mon, Tue, ... Sun)"))
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a)?, day_index(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day_index(part)?] = true,
        }
    }
    Ok(days)
}

fn parse_clock(text: &str) -> Result<u16, String> {
    let text = text.trim();
    let (h, m) = text.split_once(':').ok_or_else(|| format!("{text:?} is not a time HH:MM"))?;
    let (Ok(h), Ok(m)) = (h.parse::<u16>(), m.parse::<u16>()) else {
        return Err(format!("{text:?} is not a time HH:MM"));
    };
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(format!("{text:?} is not a time of day (00:00 to 24:00)"));
    }
    Ok(h * 60 + m)
}

fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Millis {
        crate::event::parse_time("t", text).unwrap()
    }

    #[test]
    fn office_hours_in_a_named_zone_follow_daylight_saving() {
        let hours = WorkingHours::parse("Mon-Fri 09:00-17:00", "Europe/Berlin").unwrap();
        // Monday 2026-01-05: 08:30 UTC is 09:30 in Berlin (CET, +1).
        assert!(hours.contains(at("2026-01-05T08:30:00Z")));
        assert!(!hours.contains(at("2026-01-05T07:30:00Z")));
        // Monday 2026-07-06: 07:30 UTC is 09:30 in Berlin (CEST, +2).
        assert!(hours.contains(at("2026-07-06T07:30:00Z")));
        assert!(!hours.contains(at("2026-01-10T10:00:00Z")), "Saturday");
        assert_eq!(hours.offset_seconds(at("2026-07-06T07:30:00Z")), 7200);
    }

    #[test]
    fn night_shifts_and_day_lists() {
        let hours = WorkingHours::parse("Sat,Sun 22:00-06:00", "+05:30").unwrap();
        // Saturday 2026-01-10 22:30 local = 17:00 UTC; Monday 05:00 local belongs to Sunday's shift.
        assert!(hours.contains(at("2026-01-10T17:00:00Z")));
        assert!(hours.contains(at("2026-01-11T23:30:00Z")));
        assert!(!hours.contains(at("2026-01-12T23:30:00Z")), "Monday night is off");
    }

    #[test]
    fn bad_input_names_the_part() {
        assert_eq!(WorkingHours::parse("Mon-Fri 09:00-17:00", "Mars/Olympus").unwrap_err().0, "timezone");
        assert_eq!(WorkingHours::parse("Mon-Fri 09:00-17:00", "").unwrap_err().0, "timezone");
        assert_eq!(WorkingHours::parse("Mon-Fri 09:00-17:00", "+15:00").unwrap_err().0, "timezone");
        assert_eq!(WorkingHours::parse("Mon-Fry 09:00-17:00", "UTC").unwrap_err().0, "schedule");
        assert_eq!(WorkingHours::parse("Mon-Fri 9-17", "UTC").unwrap_err().0, "schedule");
        assert_eq!(WorkingHours::parse("Mon-Fri 09:00-25:00", "UTC").unwrap_err().0, "schedule");
        assert_eq!(WorkingHours::parse("09:00-17:00", "UTC").unwrap_err().0, "schedule");
        assert_eq!(WorkingHours::parse("Mon 09:00-09:00", "UTC").unwrap_err().0, "schedule");
        assert_eq!(
            WorkingHours::parse("monday-friday 08:00-16:30", "utc").unwrap().schedule,
            "monday-friday 08:00-16:30"
        );
    }
}

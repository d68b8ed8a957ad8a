//! Reports for security teams: filtered flag, presence-failure and session
//! listings, one device's timeline, a period summary, and the farm view.
//!
//! Plain functions over the store, scoped to the tenant the caller passes
//! (always the authenticated caller's, never one named in a request). The
//! gRPC `ReportService` and the web console are thin layers over them.
//! Every listing is newest first and keyset-paged on (time, id) with opaque
//! tokens, so rows inserted while a client pages neither repeat nor vanish.

mod evidence;
mod farms;
mod filters;
mod lists;
mod summary;
mod timeline;
mod timeline_sources;

pub use evidence::{GeoPoint, parse as parse_evidence, redact as redact_evidence};
pub use farms::{
    Answer, DAY_MS, DeviceAnswers, FARM_WINDOW_MS, Farm, FarmView, Farms, MAX_FARMS, MAX_MARKS, MAX_TIMELINE_DEVICES,
    farms, group as group_farms,
};
pub use filters::{
    Cursor, DEFAULT_PAGE_SIZE, FailureFilter, FailureOutcome, FlagFilter, FlagStatus, MAX_PAGE_SIZE, PageRequest,
    Paged, SessionDecision, SessionFilter, Severity, TimeWindow, known_kinds, parse_kind,
};
pub use lists::{
    FailureItem, FlagAtTime, FlagItem, SessionItem, SessionReason, list_failures, list_flags, list_sessions,
};
pub use summary::{Cluster, ClusterMember, DeviceFailures, FlagCount, OutcomeCount, Summary, SummaryRequest, summary};
pub use timeline::{
    EnrollmentInfo, Location, Timeline, TimelineDetail, TimelineDevice, TimelineEntry, TpmInfo, device_timeline,
};

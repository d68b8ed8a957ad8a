//! Risk engine: laptop-farm, relocation and hardware-anomaly detection.
//!
//! Pure domain logic — no I/O, no database, no clock (every time comes from an
//! event; files are read by the caller, see [`load_engine`]). tetherd calls
//! [`Engine::process`] for each enrollment, presence answer and access check
//! and persists the [`Flag`]s it returns; `tether analyze` replays an event
//! log through the same engine.
//!
//! ```
//! use tether_risk::{Engine, Event, RiskConfig};
//! let mut engine = Engine::new(RiskConfig::default()).unwrap();
//! let line = r#"{"type":"enrollment","at":"2026-01-05T09:00:00Z","tenant":"acme","worker":"w1",
//!   "device":"d1","ip":"203.0.113.7","attested":false,"format":"none"}"#;
//! let flags = engine.process(&Event::from_json(line).unwrap());
//! assert_eq!(flags[0].kind.as_str(), "unattested_hardware");
//! ```

pub mod config;
pub mod engine;
pub mod event;
pub mod flag;
pub mod geo;
pub mod hours;
mod load;
pub mod network;
pub mod policy;
pub mod signals;
pub mod simulate;
mod state;

/// Unix epoch milliseconds.
pub type Millis = i64;

pub use config::RiskConfig;
pub use engine::{Engine, ProbeRequest};
pub use event::{Event, EventBody};
pub use flag::{DeviceSummary, Flag, FlagKind, Severity};
pub use geo::{Enricher, Geo, MmdbEnricher, NetworkClass, NoEnricher};
pub use hours::WorkingHours;
pub use load::load_engine;
pub use policy::{FlagPolicy, FlagPolicyError, KindRule};

//! What tetherd decides, by capability. Imports `store`, `telemetry` and
//! `util`, never `transport` or `process`.

pub mod access;
pub mod app;
pub mod audit;
pub mod enrollment;
pub mod error;
pub mod flags;
pub mod limits;
pub mod presence;
pub mod reports;
pub mod risk_live;
pub mod siem;
pub mod tenancy;
pub mod tiers;

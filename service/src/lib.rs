//! `tetherd`: enrollment of company-issued devices, presence challenges,
//! access decisions for gateways and reports for analysts, over gRPC.
//!
//! Layers read top-down and import only downwards (docs/architecture.md):
//! - [`process`]: configuration, server assembly, health, the scheduler;
//! - [`transport`]: gRPC services and the web console — parse, authenticate,
//!   convert, map errors, nothing else;
//! - [`domain`]: the decisions, one folder per capability;
//! - [`store`]: SQL only; it knows rows, not rules.
//!
//! [`telemetry`] and [`util`] are leaves every layer may use.

pub mod domain;
pub mod process;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod util;

//! `tetherd`: enrollment of company-issued devices, presence challenges,
//! access decisions for gateways and reports for analysts, over gRPC.
//!
//! The transport layer (`rpc`) is thin: it authenticates, converts messages
//! and maps errors; the decisions live in the domain modules (`enrollment`,
//! `presence`, `access`), and persistence in `store`.

pub mod access;
pub mod access_token;
pub mod access_token_envoy;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config_file;
pub mod console;
pub mod deadline;
pub mod enrollment;
pub mod error;
pub mod flag_policy;
pub mod flag_review;
pub mod health;
pub mod limits;
pub mod pepper;
pub mod posture;
pub mod presence;
pub mod reports;
pub mod risk;
pub mod risk_live;
pub mod risk_probes;
pub mod risk_shared;
pub mod rpc;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod tls;
pub mod tpm_enrollment;
pub mod tpm_presence;
pub mod util;

//! `tetherd`: enrollment of company-issued devices, presence challenges,
//! access decisions for gateways and reports for analysts, over gRPC.
//!
//! The transport layer (`rpc`) is thin: it authenticates, converts messages
//! and maps errors; the decisions live in the domain modules (`enrollment`,
//! `presence`, `access`), and persistence in `store`.

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod enrollment;
pub mod error;
pub mod health;
pub mod limits;
pub mod presence;
pub mod risk;
pub mod risk_live;
pub mod rpc;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod tenancy;
pub mod tls;
pub mod tpm_enrollment;
pub mod tpm_presence;
pub mod util;

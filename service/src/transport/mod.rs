//! The surfaces callers reach: gRPC services (`rpc`), the analysts' web
//! console (`console`) and the workers' web app (`web`). They parse,
//! authenticate, convert and map errors;
//! every decision is the domain's.

pub mod console;
pub mod deadline;
pub mod rpc;
pub mod security_headers;
pub mod status;
pub mod web;

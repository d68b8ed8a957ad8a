//! The surfaces callers reach: gRPC services (`rpc`) and the analysts' web
//! console (`console`). They parse, authenticate, convert and map errors;
//! every decision is the domain's.

pub mod console;
pub mod deadline;
pub mod rpc;
pub mod status;

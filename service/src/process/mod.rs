//! The running process: configuration file, TLS material, server assembly,
//! health reporting and the scheduler. `main.rs` drives these.

pub mod config_file;
pub mod health;
pub mod mds;
pub mod mds_fetch;
pub mod scheduler;
pub mod server;
pub mod tls;

//! The signals, each an `impl Engine` block over the engine's state.

pub mod burst;
pub mod egress;
pub mod egress_view;
pub mod hardware;
pub mod home;
pub mod missed;
pub mod persistence;
pub mod posture;
pub mod reshipped;
pub mod shared_hardware;
pub mod sweep;
pub mod travel;

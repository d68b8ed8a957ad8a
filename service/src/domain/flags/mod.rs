//! Flags after they are raised: the tenant's policy on which ones deny
//! access, and the analyst's review of each.

pub mod policy;
pub mod review;

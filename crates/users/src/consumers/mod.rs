//! Event consumers: what the users service does when events arrive.

pub mod profile_eviction;

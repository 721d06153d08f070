//! The reservation use cases: reserving an order's lines (all or none, from the best warehouses, at most once
//! per order) and the rest of a hold's life (release, commit, consume at shipping, expiry). Each runs in its own
//! transaction through `repo` and keeps the lock order documented in `repo::locks`.

pub mod reserve;
pub mod settle;

//! Background jobs that run on a schedule in every instance (instances share the work).

pub mod expire_pending_orders;

//! Event consumers: what the orders service does when another service's events arrive.

pub mod order_saga;

//! The shared suite on a real Redis (127.0.0.1:6379).

mod common;

suite!(common::redis);

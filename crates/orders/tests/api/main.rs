//! Black-box tests of the orders service: a real server on a random port, a fresh PostgreSQL database per
//! test, the service's background tasks running, and a stand-in for the inventory service answering the
//! order saga through the event backbone.

mod boundary;
mod create;
mod helpers;
mod idempotency;
mod location;
mod metrics;
mod operations;
mod preconditions;
mod saga;
mod shipments;
mod tracking;
mod tracking_page;
mod transitions;
mod visibility;

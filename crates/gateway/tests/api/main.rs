//! Black-box tests of the gateway: the real `gateway::run` on a random port in front of a fake upstream.

mod balancing;
mod breaker;
mod connections;
mod discovery;
mod edge;
mod errors;
mod helpers;
mod limits;
mod ops;
mod paths;
mod policy;
mod proxy;
mod ratelimit;
mod reload;
mod retries;
mod wire;

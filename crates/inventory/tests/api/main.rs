//! Black-box tests of the inventory service: a real server on a random port and a fresh PostgreSQL
//! database per test (or per property-test run).

mod auth;
mod boundary;
mod caching;
mod concurrency;
mod events;
mod expiry;
mod helpers;
mod import;
mod ledger;
mod location;
mod metrics;
mod operations;
mod products;
mod reservations;
mod saga;
mod settle;
mod stock;
mod transfers;
mod warehouses;

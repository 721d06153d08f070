//! Black-box tests of the users service: each test starts the real service on a random port against a
//! database of its own, and talks HTTP to it.

mod admin;
mod auth;
mod boundary;
mod cache;
mod connections;
mod helpers;
mod me;
mod operations;
mod tokens;

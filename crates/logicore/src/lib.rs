//! What the `logicore` binary is made of that its tests also need: the list of the services it runs.

pub mod services;

//! The shared suite on the in-process backend.

mod common;

suite!(common::memory);

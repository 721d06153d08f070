//! The state every handler of a service shares.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::auth::JwtKeys;

/// A service's handles behind one `Arc`: axum clones the state for every request, and one reference
/// count is much cheaper than one per handle (a service's handles hold a few dozen `Arc`s and a
/// `String`, whose counters every request bounced between cores).
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    pub fn new(handles: T) -> Self {
        Self(Arc::new(handles))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// What the `AuthUser` extractor needs of a service's handles: the keys that verify bearer tokens.
pub trait HoldsKeys {
    fn keys(&self) -> &JwtKeys;
}

impl<T: HoldsKeys> FromRef<Shared<T>> for JwtKeys {
    fn from_ref(state: &Shared<T>) -> Self {
        state.keys().clone()
    }
}

//! The handles every handler shares, and the role extractors that guard each route.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use cache::Cache;
use messaging::Messaging;
use platform::Problem;
use platform::auth::{AuthUser, JwtKeys, Role};
use platform::db::Db;

use crate::config::Config;

/// Cheap to clone.
/// What every handler shares, behind one `Arc`: axum clones the state for every request, and one
/// reference count is much cheaper than one per handle (these hold a few dozen `Arc`s and a `String`,
/// whose counters every request bounced between cores).
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

pub struct Handles {
    pub db: Db,
    /// Product lookups and availability (see `caching`).
    pub cache: Cache,
    /// Records the `inventory.*` events of every change in its transaction.
    pub messaging: Messaging,
    pub keys: JwtKeys,
    pub config: Arc<Config>,
}

impl AppState {
    pub fn new(handles: &skeleton::Handles, config: &Config) -> Self {
        let basics = &config.basics;
        Self(Arc::new(Handles {
            db: handles.db.clone(),
            cache: handles.cache.clone(),
            messaging: handles.messaging.clone(),
            keys: JwtKeys::with_revocations(&basics.auth, basics.revocation.set.clone()),
            config: Arc::new(config.clone()),
        }))
    }
}

/// Lets the `AuthUser` extractor verify bearer tokens.
impl FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}

const STAFF: &[Role] = &[Role::Admin, Role::Manager, Role::Dispatcher];
const MANAGERS: &[Role] = &[Role::Admin, Role::Manager];

/// Declares an extractor that verifies the bearer token and then the role, so a caller without the role
/// gets 403 before the body is even read (and never a 422 that would reveal the validation rules).
macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $roles:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub AuthUser);

        impl<S> FromRequestParts<S> for $name
        where
            S: Send + Sync,
            JwtKeys: FromRef<S>,
        {
            type Rejection = Problem;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
                let user = AuthUser::from_request_parts(parts, state).await?;
                user.require($roles)?;
                Ok(Self(user))
            }
        }
    };
}

role_extractor!(
    /// admin, manager or dispatcher.
    Staff,
    STAFF
);
role_extractor!(
    /// admin or manager.
    Manager,
    MANAGERS
);

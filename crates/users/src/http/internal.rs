//! The internal routes, on the service's own port only (the gateway routes none of them).
//!
//! `GET /internal/revocations`: the revocations recorded since a watermark, for the gateway, which has no
//! database to poll (see `platform::revocation`); user ids and token ids are all it tells, and neither lets
//! anyone act. `POST /internal/identities`: external users' LogiCore ids, for every other process.

use axum::extract::State;
use platform::FieldError;
use platform::auth::AuthUser;
use platform::auth::external::Admitted;
use platform::extract::Query;
use platform::extract::Validate;
use platform::revocation::store::{self, Batch};
use serde::Deserialize;

use crate::error::UsersError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The `watermark` of the previous answer; absent for every live revocation.
    pub since: Option<i64>,
}

impl Validate for FeedQuery {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}

/// `POST /internal/identities`: the LogiCore user of the external identity whose verified token is the
/// bearer, created on first sight (see `identities`). The token is verified here as everywhere, so no one
/// without a token of a trusted issuer can create a user; a deactivated user gets 401 `TOKEN_REVOKED`.
pub async fn identities(user: AuthUser) -> axum::Json<Admitted> {
    axum::Json(Admitted { user_id: user.id() })
}

pub async fn revocations(
    State(state): State<AppState>,
    Query(query): Query<FeedQuery>,
) -> Result<axum::Json<Batch>, UsersError> {
    let read = store::read_since(state.db.pool(), query.since);
    Ok(axum::Json(state.db.timed("revocations.read", read).await?))
}

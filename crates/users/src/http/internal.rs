//! `GET /internal/revocations`: the revocations recorded since a watermark, for the gateway, which has no
//! database to poll (see `platform::revocation`). On the service's own port only; user ids and token ids
//! are all it tells, and neither lets anyone act.

use axum::extract::State;
use platform::FieldError;
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

pub async fn revocations(
    State(state): State<AppState>,
    Query(query): Query<FeedQuery>,
) -> Result<axum::Json<Batch>, UsersError> {
    let read = store::read_since(state.db.pool(), query.since);
    Ok(axum::Json(state.db.timed("revocations.read", read).await?))
}

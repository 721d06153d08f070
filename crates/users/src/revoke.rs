//! Which changes revoke access tokens, and recording them: in the transaction of the change (the
//! `revocations` table every other process reads), then announced after the commit (this process's set at
//! once, the others through Redis when it is on). See `platform::revocation`.

use std::time::Duration;

use platform::auth::Claims;
use platform::db::Db;
use platform::revocation::{Announcer, Revocation, RevocationOptions, store};
use sqlx::PgConnection;

use crate::error::UsersError;
use crate::models::User;

/// Records and announces revocations. Cheap to clone.
#[derive(Clone)]
pub struct Revoker {
    announcer: Announcer,
    access_ttl: Duration,
}

impl Revoker {
    pub fn new(options: &RevocationOptions, access_ttl: Duration) -> Self {
        Self {
            announcer: Announcer::new(options),
            access_ttl,
        }
    }

    /// What a change of the account calls for: its tokens carry the old role, or it may no longer act,
    /// or its password was replaced. An inactive account is revoked again on every change, as its
    /// sessions are ended again.
    pub fn for_change(&self, before: &User, after: &User) -> Option<Revocation> {
        let revoke = before.role != after.role
            || !after.is_active()
            || before.password_hash != after.password_hash;
        revoke.then(|| Revocation::user(after.id, self.access_ttl))
    }

    /// Records `revocation` in the caller's transaction.
    pub async fn record(
        &self,
        db: &Db,
        connection: &mut PgConnection,
        revocation: &Revocation,
    ) -> Result<(), UsersError> {
        db.timed("revocations.insert", store::insert(connection, revocation))
            .await?;
        Ok(())
    }

    /// Makes recorded revocations effective; call once their transaction has committed.
    pub async fn announce(&self, revocations: &[Revocation]) {
        self.announcer.announce(revocations).await;
    }

    /// Revokes the one access token a logout presents.
    pub async fn log_out(&self, db: &Db, claims: &Claims) -> Result<(), UsersError> {
        let revocation = Revocation::token(claims);
        let mut connection = db.acquire().await?;
        self.record(db, &mut connection, &revocation).await?;
        drop(connection);
        self.announce(&[revocation]).await;
        tracing::info!(user_id = %claims.sub, "access token revoked by logout");
        Ok(())
    }
}

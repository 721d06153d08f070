-- Revoked access tokens (platform::revocation::store reads and writes this table, and every service polls
-- it). A `user` row refuses every token of the user issued at or before `issued_up_to` (Unix seconds); a
-- `token` row the one token with that jti. A row can go once `keep_until` has passed: every token it refuses
-- has expired by then.

CREATE TABLE revocations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL,
    subject      uuid NOT NULL,
    issued_up_to bigint,
    keep_until   bigint NOT NULL,
    recorded_at  timestamptz NOT NULL,
    CONSTRAINT revocations_kind_check CHECK (kind IN ('user', 'token')),
    CONSTRAINT revocations_user_cutoff CHECK ((kind = 'user') = (issued_up_to IS NOT NULL))
);

CREATE INDEX revocations_recorded_at ON revocations (recorded_at);
CREATE INDEX revocations_keep_until ON revocations (keep_until);

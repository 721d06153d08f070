-- Accounts and refresh tokens of the users service. Tables live in the `users` schema: the pool sets
-- `search_path`, so names here are unqualified.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- Stored normalised (trimmed, lowercased) by the service, so plain equality is case-insensitive.
    email         text NOT NULL,
    full_name     text NOT NULL,
    phone         text,
    role          text NOT NULL,
    status        text NOT NULL DEFAULT 'active',
    password_hash text NOT NULL,
    preferences   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_normalised CHECK (email = lower(btrim(email))),
    CONSTRAINT users_role_check CHECK (role IN ('admin', 'manager', 'dispatcher', 'driver', 'customer')),
    CONSTRAINT users_status_check CHECK (status IN ('active', 'inactive')),
    CONSTRAINT users_preferences_object CHECK (jsonb_typeof(preferences) = 'object')
);

-- "Is there an admin yet?" at start-up, and role filters of the admin list.
CREATE INDEX users_role_idx ON users (role);

CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY,
    -- Every token rotated from one login shares the family; reuse of a spent token revokes the family.
    family_id  uuid NOT NULL,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the opaque token: a leaked table does not leak usable tokens.
    token_hash bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    spent_at   timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash)
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

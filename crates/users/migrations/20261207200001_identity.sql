-- Identity (docs/identity.md): LogiCore's signing keys when the database keeps them, users who come from an
-- external OpenID provider, and OAuth2 machine clients.

-- Keys the users service signs tokens with (auth.signing_key_dir empty). The key with the latest `signs_from`
-- at or before now signs; a key is published in the JWKS from its insertion (before it signs, so every verifier
-- holds it in time) until every token it signed has expired.
CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,
    algorithm   text NOT NULL,
    private_pem text NOT NULL,
    signs_from  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT signing_keys_algorithm_check CHECK (algorithm IN ('ES256', 'RS256'))
);

-- A user first seen through an external provider's token: (issuer, sub) → the LogiCore user made for it.
CREATE TABLE external_identities (
    issuer     text NOT NULL,
    subject    text NOT NULL,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);

CREATE INDEX external_identities_user_idx ON external_identities (user_id);

-- Machine clients (client credentials). Only a SHA-256 of the secret is kept: it carries 256 random bits, so a
-- slow hash would protect nothing more.
CREATE TABLE api_clients (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    scopes      text[] NOT NULL,
    secret_hash bytea NOT NULL,
    status      text NOT NULL DEFAULT 'active',
    created_by  uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    secret_rotated_at timestamptz,
    revoked_at  timestamptz,
    CONSTRAINT api_clients_status_check CHECK (status IN ('active', 'revoked')),
    CONSTRAINT api_clients_scopes_present CHECK (cardinality(scopes) > 0)
);

-- The admin list, newest first.
CREATE INDEX api_clients_created_idx ON api_clients (created_at DESC, id DESC);

//! Identity end to end (docs/identity.md): LogiCore as an issuer verified with public keys alone, tokens of a
//! real external OpenID provider (`oidc-provider`, started by `testkit::oidc`), and OAuth2 machine clients.
//! Every service runs in this process on its own port and database, with no shared secret at all: HS256 is
//! off and `auth.jwt_secret` is empty everywhere.

mod clients;
mod external;
mod harness;
mod issuer;

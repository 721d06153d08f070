// A real OpenID provider (oidc-provider) for LogiCore's identity tests, started by testkit::oidc.
//
// Environment:
//   PORT         loopback port to listen on; the issuer is http://127.0.0.1:$PORT
//   CONFIG       JSON file: {"resources": ["https://api.example", ...],
//                            "clients": [{"id", "secret", "roles": [...], "token_ttl_secs"}, ...]}
//   KEYS         JWKS file with the PRIVATE signing keys; generated (one ES256 key) when missing
//   ROTATE=1     generate a new key, put it first (it signs from now on) and keep the old ones
//   JWKS_COUNTER file holding the number of GET requests to the JWKS endpoint, so the count survives restarts
//
// Prints `READY {"issuer":...,"kids":[...]}` (signing key first) on stdout once it listens.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const { PORT, CONFIG, KEYS, ROTATE, JWKS_COUNTER } = process.env;
const issuer = `http://127.0.0.1:${PORT}`;
const config = JSON.parse(readFileSync(CONFIG, 'utf8'));
const clients = new Map(config.clients.map((client) => [client.id, client]));

// oidc-provider signs with the first key of the requested alg, so a rotated-in key goes first; the old keys stay
// published so tokens they signed remain verifiable.
function newKey() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'ES256', use: 'sig' };
}
let keys = existsSync(KEYS) ? JSON.parse(readFileSync(KEYS, 'utf8')).keys : [];
if (keys.length === 0 || ROTATE === '1') {
  keys = [newKey(), ...keys];
  writeFileSync(KEYS, JSON.stringify({ keys }));
}

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    client_id: client.id,
    client_secret: client.secret,
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_post',
    response_types: [],
    redirect_uris: [],
  })),
  // The default (RS256) needs an RSA key; ID tokens are never issued here, but every client is validated against it.
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  jwks: { keys },
  // Fixed so that the counter below and the discovery document's jwks_uri name the same path.
  routes: { jwks: '/jwks' },
  features: {
    // Only machine clients are configured; the login pages would only warn about their development defaults.
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A token request without `resource` is for the first configured resource.
      defaultResource: (ctx, client, oneOf) => oneOf ?? config.resources[0],
      // Without a resource server oidc-provider issues opaque tokens; with one whose accessTokenFormat is 'jwt'
      // the access token is a JWT whose `aud` is the resource indicator.
      getResourceServerInfo: (ctx, resource, client) => {
        if (!config.resources.includes(resource)) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: clients.get(client.clientId).token_ttl_secs,
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  // Roles as Keycloak nests them, and flat as other providers put them.
  extraTokenClaims: (ctx, token) => {
    const { roles } = clients.get(token.clientId);
    return { realm_access: { roles }, groups: roles };
  },
});

// Test-only: counts JWKS fetches (verifiers' cache behaviour is what the tests check) and serves the count outside
// the OIDC routes. provider.use puts this before oidc-provider's own routing.
let jwksRequests = existsSync(JWKS_COUNTER) ? Number(readFileSync(JWKS_COUNTER, 'utf8')) : 0;
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/test/jwks-requests') {
    ctx.body = { count: jwksRequests };
    return;
  }
  if (ctx.method === 'GET' && ctx.path === '/jwks') {
    jwksRequests += 1;
    writeFileSync(JWKS_COUNTER, String(jwksRequests));
  }
  await next();
});

provider.listen(Number(PORT), '127.0.0.1', () => {
  console.log(`READY ${JSON.stringify({ issuer, kids: keys.map((key) => key.kid) })}`);
});

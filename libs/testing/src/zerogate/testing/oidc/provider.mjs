// A real OpenID provider for Zerogate's tests: panva's oidc-provider (OpenID
// Certified) with its development login and consent pages.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"host": "127.0.0.1", "ports_file": "...", "clients": [{"client_id",
//          "client_secret"?, "redirect_uris", "tamper"?}]}
//
// It listens on port 0 (the kernel picks a free port), builds the provider for
// the issuer http://HOST:PORT, then writes {"http": PORT} to ports_file.
// Any login is accepted at the login page; the login is the account's email.
// A login "unverified:<email>" gives email_verified=false.
//
// Fault injection for the relying party's negative tests: a client with
// "tamper" gets, from the real token endpoint, an ID token changed after
// issue and signed again with the provider's own key (or not at all):
//   expired  exp and iat an hour in the past      audience  aud of another client
//   nonce    another nonce                         issuer    another issuer
//   hs256    HS256 keyed with the public JWK       none      alg "none", no signature
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

import { CompactSign, exportJWK, generateKeyPair, importJWK } from 'jose';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const host = config.host || '127.0.0.1';

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const privateJwk = { ...(await exportJWK(privateKey)), kid: 'zg-test-1', alg: 'RS256', use: 'sig' };
const publicJwk = { kty: privateJwk.kty, n: privateJwk.n, e: privateJwk.e, kid: privateJwk.kid, alg: 'RS256', use: 'sig' };
const signingKey = await importJWK(privateJwk, 'RS256');

const tampering = new Map(
  config.clients.filter((c) => c.tamper).map((c) => [c.client_id, c.tamper]),
);

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

async function tamper(idToken, how) {
  const [, payloadPart] = idToken.split('.');
  const claims = JSON.parse(Buffer.from(payloadPart, 'base64url').toString('utf8'));
  const now = Math.floor(Date.now() / 1000);
  let header = { alg: 'RS256', kid: publicJwk.kid, typ: 'JWT' };
  let key = signingKey;
  switch (how) {
    case 'expired': claims.iat = now - 7200; claims.exp = now - 3600; break;
    case 'audience': claims.aud = 'someone-else'; break;
    case 'nonce': claims.nonce = 'not-the-nonce-we-were-given'; break;
    case 'issuer': claims.iss = 'https://issuer.invalid'; break;
    case 'hs256':
      header = { alg: 'HS256', kid: publicJwk.kid, typ: 'JWT' };
      key = new TextEncoder().encode(JSON.stringify(publicJwk));
      break;
    case 'none': return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    default: throw new Error(`unknown tamper ${how}`);
  }
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader(header)
    .sign(key);
}

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, host, resolve);
});
const { port } = server.address();
const issuer = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    ...(c.client_secret
      ? { client_secret: c.client_secret, token_endpoint_auth_method: 'client_secret_basic' }
      : { token_endpoint_auth_method: 'none' }),
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
  })),
  jwks: { keys: [privateJwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Scope claims (email) in the ID token itself, as Google and Entra issue them.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const unverified = id.startsWith('unverified:');
    const email = unverified ? id.slice('unverified:'.length) : id;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email, email_verified: !unverified, name: email.split('@')[0] };
      },
    };
  },
});

provider.use(async (ctx, next) => {
  await next();
  const how = ctx.oidc?.client && tampering.get(ctx.oidc.client.clientId);
  if (how && ctx.path === '/token' && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: await tamper(ctx.body.id_token, how) };
  }
});

server.on('request', provider.callback());
const tmp = `${config.ports_file}.${process.pid}.tmp`;
writeFileSync(tmp, JSON.stringify({ http: port }));
renameSync(tmp, config.ports_file);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

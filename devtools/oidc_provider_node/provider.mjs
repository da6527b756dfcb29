// A real OpenID provider for the console's sign-in tests: the certified `oidc-provider`
// package, one confidential client, and users read from a JSON file at every sign-in and
// every token, so a test changes someone's groups by rewriting the file.
//
// node provider.mjs CONFIG.json, where CONFIG holds port, client_id, client_secret,
// redirect_uris and users_file; the users file maps a login name to
// {"password", "email", "name", "groups": [...]}.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const readUsers = () => JSON.parse(readFileSync(config.users_file, 'utf8'));
const SCOPES = 'openid email profile groups';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const provider = new Provider(`http://127.0.0.1:${config.port}`, {
  clients: [
    {
      client_id: config.client_id,
      client_secret: config.client_secret,
      redirect_uris: config.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: SCOPES.split(' '),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  features: { devInteractions: { enabled: false } },
  async findAccount(ctx, id) {
    const user = readUsers()[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        const email = user.email ?? `${id}@example.com`;
        return {
          sub: id, preferred_username: id, name: user.name ?? id,
          email, email_verified: true, groups: user.groups ?? [],
        };
      },
    };
  },
  // The console is the company's own application: no consent screen, as a company's
  // provider configures it for its first-party applications.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPES);
    await grant.save();
    return grant;
  },
});

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error) {
  return `<!doctype html><html><head><title>Test provider: sign in</title></head><body>
<h1>Test provider</h1>
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<label for="username">Username</label> <input id="username" name="username" autofocus>
<label for="password">Password</label> <input id="password" name="password" type="password">
<button type="submit">Sign in</button>
</form></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The login prompt: a name and password from the users file.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const { uid, prompt } = await provider.interactionDetails(ctx.req, ctx.res);
  if (prompt.name !== 'login') {
    ctx.status = 400;
    ctx.body = `unexpected prompt ${prompt.name}`;
    return undefined;
  }
  ctx.type = 'html';
  if (ctx.method !== 'POST') {
    ctx.body = loginPage(uid, '');
    return undefined;
  }
  const form = await readForm(ctx.req);
  const username = form.get('username') ?? '';
  const user = readUsers()[username];
  if (!user || user.password !== form.get('password')) {
    ctx.body = loginPage(uid, 'Wrong username or password.');
    return undefined;
  }
  const result = { login: { accountId: username } };
  ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result));
  ctx.status = 303;
  return undefined;
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on http://127.0.0.1:${config.port}`);
});

// Real OpenID Connect provider for the CPMS test suite (never for production).
//
// Usage: node server.mjs config.json
//   config: {"issuer": "http://127.0.0.1:PORT", "port": PORT,
//            "clients":  [{"client_id", "client_secret", "redirect_uris": [...], ...}],
//            "accounts": [{"sub", "email", "email_verified", "name", "password",
//                          optional "acr" and "amr" (list): what the login asserts, e.g. a second factor}]}
//
// The protocol side is the certified `oidc-provider` library; this file only adds
// what a deployment must supply itself: accounts, keys and the login page.
// Prints "READY <issuer>" on stdout once it accepts connections.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts || [];
const issuer = config.issuer.replace(/\/$/, '');

// Fresh RS256 signing key and cookie key on every start: no secrets live in the
// repository, and tokens from a previous run are (correctly) worthless.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: crypto.randomUUID(),
  alg: 'RS256',
  use: 'sig',
};

const escapeHtml = (value) => String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Minimal self-contained HTML (the library's default pages pull web fonts from the
// internet, which a browser-driven test must not do).
const page = (title, body) => `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;

// The acr values some accounts' logins assert (as EU Login says how strongly someone logged in).
const acrValues = [...new Set(accounts.map((a) => a.acr).filter(Boolean))];

const provider = new Provider(issuer, {
  ...(acrValues.length ? { acrValues } : {}),
  clients: (config.clients || []).map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    // Callers may override (e.g. token_endpoint_auth_method: 'client_secret_post').
    ...client,
  })),

  jwks: { keys: [signingJwk] },
  cookies: {
    keys: [crypto.randomBytes(32).toString('hex')],
    // Plain HTTP: browsers drop SameSite=None cookies that are not Secure, so use Lax
    // (all provider hops are same-site top-level navigations anyway).
    long: { httpOnly: true, sameSite: 'lax', signed: true },
    short: { httpOnly: true, sameSite: 'lax', signed: true },
  },

  // Which claims each scope releases.
  claims: {
    // acr and amr: how the person logged in (the login interaction sets them; see accounts).
    openid: ['sub', 'acr', 'amr'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Code flow would otherwise put scope claims only in userinfo; the tests want
  // them in the ID token too.
  conformIdTokenClaims: false,

  pkce: { methods: ['S256'], required: () => true },

  // Our own login page (below) replaces the library's dev interactions.
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Sign out?', `${form}<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = page('Signed out', '');
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },

  findAccount: async (ctx, sub) => {
    const account = accounts.find((a) => a.sub === sub);
    if (!account) return undefined;
    return {
      accountId: account.sub,
      claims: async () => ({
        sub: account.sub,
        email: account.email,
        email_verified: account.email_verified,
        name: account.name,
      }),
    };
  },

  // Auto-consent: the test clients are first party, so every requested OIDC scope and
  // claim is granted silently and the consent prompt never appears.
  loadExistingGrant: async (ctx) => {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    const grant = (grantId && await oidc.provider.Grant.find(grantId))
      || new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.account.accountId });
    grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
    if (oidc.requestParamClaims.size) grant.addOIDCClaims([...oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },

  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Error', Object.entries(out)
      .map(([key, value]) => `<p><b>${escapeHtml(key)}</b>: ${escapeHtml(value)}</p>`).join(''));
  },
});

// --- Login interaction: plain HTML form, usable by a browser and by httpx. ---

const loginForm = (uid, error = '') => page('Sign in', `
${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
  <label>Login (email or sub) <input name="login" autofocus></label>
  <label>Password <input name="password" type="password"></label>
  <button type="submit">Sign in</button>
</form>`);

const readForm = async (req) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
};

const sendHtml = (res, status, html) => {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
};

async function handleInteraction(req, res, uid, action) {
  // interactionDetails also checks the interaction cookie matches this uid.
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid || details.prompt.name !== 'login') {
    sendHtml(res, 400, page('Error', `<p>unexpected interaction (${escapeHtml(details.prompt.name)})</p>`));
  } else if (req.method === 'GET' && !action) {
    sendHtml(res, 200, loginForm(uid));
  } else if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const login = form.get('login') || '';
    const account = accounts.find((a) => a.email === login || a.sub === login);
    // Constant-time compare is overkill for a test IdP, but costs nothing.
    const given = Buffer.from(form.get('password') || '');
    const expected = Buffer.from(account?.password ?? '');
    if (!account || given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
      sendHtml(res, 401, loginForm(uid, 'Invalid login or password.'));
      return;
    }
    // 303 back to the authorization endpoint, which then redirects to the client.
    const asserted = { accountId: account.sub };
    if (account.acr) asserted.acr = account.acr;
    if (account.amr) asserted.amr = account.amr;
    await provider.interactionFinished(req, res, { login: asserted }, {
      mergeWithLastSubmission: false,
    });
  } else {
    sendHtml(res, 405, page('Error', '<p>method not allowed</p>'));
  }
}

const providerCallback = provider.callback();
const server = http.createServer((req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\/([a-z]+))?\/?(?:\?.*)?$/.exec(req.url);
  if (!match) {
    providerCallback(req, res);
    return;
  }
  handleInteraction(req, res, match[1], match[2]).catch((err) => {
    // Typically an expired/unknown interaction (session cookie missing).
    console.error(err);
    if (!res.headersSent) sendHtml(res, 400, page('Error', `<p>${escapeHtml(err.message)}</p>`));
    else res.end();
  });
});

// Static clients are validated lazily by the library; load them now so a bad test
// config fails at start-up (no READY line) instead of at the first request.
try {
  for (const { client_id: clientId } of config.clients || []) await provider.Client.find(clientId);
} catch (err) {
  console.error(`invalid client in config: ${err.message} ${err.error_description || ''}`);
  process.exit(1);
}

server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});

// The Python helper stops us with SIGTERM; drop keep-alive sockets so we exit at once.
const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

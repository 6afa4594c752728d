// The Access browser flow in headless Chromium (TestAccessBrowser runs it):
// log in through the test OpenID provider, check the session cookie and
// what the origin saw, log out, be refused as another user, and see a
// short session expire. It prints one JSON object of what it saw.
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.env.ADIT_BROWSER_TEST);
const out = {};

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true }); // the test CA of the edge's brought certificate
  const page = await ctx.newPage();

  // Log in at the provider's form, reached through the edge's redirect.
  async function login(url, user, password) {
    await page.goto(url);
    await page.waitForSelector('#username', { timeout: 20000 });
    const at = page.url();
    await page.fill('#username', user);
    await page.fill('#password', password);
    await Promise.all([page.waitForURL(u => !u.toString().startsWith(cfg.issuer), { timeout: 20000 }), page.click('#submit')]);
    return at;
  }
  const text = async () => (await page.textContent('body')) || '';

  // 1. ann logs in; the origin sees her JWT.
  out.loginPage = await login(cfg.app + '/hello?x=1', 'ann', 'ann-pw');
  out.afterLoginURL = page.url();
  out.origin = JSON.parse(await text());
  out.cookies = (await ctx.cookies(cfg.app)).map(c => ({ name: c.name, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path }));
  if (cfg.screenshots) await page.screenshot({ path: cfg.screenshots + '/origin.png' });

  // 2. A second visit needs no login.
  await page.goto(cfg.app + '/again');
  out.second = JSON.parse(await text());

  // 3. Logout; the next visit goes to the provider again.
  await page.goto(cfg.app + '/.adit/logout');
  out.logout = await text();
  await page.goto(cfg.app + '/hello');
  await page.waitForSelector('#username', { timeout: 20000 });
  out.afterLogoutURL = page.url();

  // 4. bob is not allowed: a 403 page naming the app, with a request ID.
  const resp = await (async () => {
    const p = page.waitForResponse(r => r.url().startsWith(cfg.app) && r.status() === 403, { timeout: 20000 });
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await page.click('#submit');
    return p;
  })();
  await page.waitForLoadState();
  out.denied = { status: resp.status(), requestId: resp.headers()['adit-request-id'], body: await text() };
  if (cfg.screenshots) await page.screenshot({ path: cfg.screenshots + '/denied.png' });

  // 5. A short session expires: the browser is sent to log in again.
  const ctx2 = await browser.newContext({ ignoreHTTPSErrors: true });
  const page2 = await ctx2.newPage();
  await page2.goto(cfg.short + '/');
  await page2.waitForSelector('#username', { timeout: 20000 });
  await page2.fill('#username', 'ann');
  await page2.fill('#password', 'ann-pw');
  await Promise.all([page2.waitForURL(u => !u.toString().startsWith(cfg.issuer), { timeout: 20000 }), page2.click('#submit')]);
  out.shortOrigin = JSON.parse((await page2.textContent('body')) || '{}');
  await page2.waitForTimeout(cfg.shortWaitMs);
  await page2.goto(cfg.short + '/');
  out.shortExpiredURL = page2.url();
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));

// The dashboard in headless Chromium (TestDashboardBrowser runs it): log in
// with the admin token, watch a tunnel's connection appear and disappear
// as the test starts and stops a connector, publish a hostname and reach
// it, see a refused edit's error at its field, watch the traffic page's
// live log, take screenshots of every page at a desktop and a phone width
// and check their layout, labels, keyboard navigation and contrast, log
// out. It prints one JSON object of what it saw; the Go test judges it.
import { writeFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.env.ADIT_BROWSER_TEST);
const out = { steps: [], layout: [], contrast: [], unlabeled: [], consoleErrors: [] };
const t0 = Date.now();
const step = s => { const m = s + ' ' + ((Date.now() - t0) / 1000).toFixed(1) + 's'; out.steps.push(m); console.error(m); };
const T = 20000; // the longest wait for one thing on a loaded machine

// control asks the Go test to act (start or stop the connector).
async function control(what) {
  const r = await fetch(cfg.control + '/' + what, { method: 'POST' });
  if (!r.ok) throw new Error('control ' + what + ': ' + r.status + ' ' + await r.text());
}

const desktop = { width: 1280, height: 800 };
const phone = { width: 390, height: 844 };

// checkPage measures what a person would see: no horizontal scrolling, the
// header, navigation and heading visible, every input labelled, and the
// contrast of every piece of text against its background.
async function checkPage(page, name, width) {
  const must = name === 'logged-out' ? ['main h1', 'input[name=token]', '#sso-login'] : ['header.top', 'header.top nav', 'main h1', '#logout'];
  const r = await page.evaluate(must => {
    const lum = c => {
      const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
      return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
    };
    const parse = s => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return { rgb: p.slice(0, 3), a: p.length > 3 ? p[3] : 1 }; };
    const bgOf = el => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0.5) return c.rgb;
      }
      return [255, 255, 255];
    };
    const visible = el => { const b = el.getBoundingClientRect(); const st = getComputedStyle(el); return b.width > 0 && b.height > 0 && st.visibility !== 'hidden' && st.display !== 'none'; };
    const res = { overflow: document.documentElement.scrollWidth - window.innerWidth, missing: [], lowContrast: [], unlabeled: [], texts: 0 };
    for (const sel of must) {
      const el = document.querySelector(sel);
      if (!el || !visible(el)) { res.missing.push(sel); continue; }
      const b = el.getBoundingClientRect();
      if (b.left < 0 || b.right > window.innerWidth + 1) res.missing.push(sel + ' (outside the viewport)');
    }
    for (const el of document.querySelectorAll('body *')) {
      if (el.namespaceURI !== 'http://www.w3.org/1999/xhtml' || !visible(el) || el.closest('.skip')) continue;
      const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
      if (!own && !['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName)) continue;
      if (el.disabled) continue;
      const st = getComputedStyle(el);
      const fg = parse(st.color);
      if (!fg) continue;
      const l1 = lum(fg.rgb), l2 = lum(bgOf(el));
      const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      const size = parseFloat(st.fontSize), bold = Number(st.fontWeight) >= 700;
      const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
      res.texts++;
      if (ratio < need) res.lowContrast.push({ text: (el.textContent || el.tagName).trim().slice(0, 40), ratio: Math.round(ratio * 100) / 100, need, color: st.color, bg: bgOf(el).join(',') });
    }
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden') continue;
      if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) res.unlabeled.push(el.name || el.id || el.outerHTML.slice(0, 60));
    }
    return res;
  }, must);
  out.layout.push({ page: name, width, overflow: r.overflow, missing: r.missing, texts: r.texts });
  for (const c of r.lowContrast) out.contrast.push({ page: name, width, ...c });
  for (const u of r.unlabeled) out.unlabeled.push({ page: name, width, field: u });
}

// snap saves a PNG of the page: the whole page, or only the viewport.
// It asks Chromium directly (DevTools' Page.captureScreenshot) for a PNG
// encoded for speed: a full-page PNG the default way costs ~3.5 times the
// CPU at 1280 px (~0.8 s against ~0.23 s a shot, measured in CPU seconds
// on a loaded machine), the files ~20% larger.
let cdp;
async function snap(page, path, full) {
  let clip;
  if (full) {
    const m = await cdp.send('Page.getLayoutMetrics');
    clip = { x: 0, y: 0, width: m.cssContentSize.width, height: m.cssContentSize.height, scale: 1 };
  }
  const r = await cdp.send('Page.captureScreenshot', { format: 'png', optimizeForSpeed: true, captureBeyondViewport: !!full, clip });
  await writeFile(path, Buffer.from(r.data, 'base64'));
}

// shoot keeps full-page screenshots of a page at both widths and checks
// its layout at each. Nothing waits for a frame: a screenshot renders one,
// and checkPage's measurements lay the page out (no script of the page
// reacts to a resize).
async function shoot(page, name) {
  for (const [w, vp] of [['desktop', desktop], ['phone', phone]]) {
    if (w !== 'desktop') await page.setViewportSize(vp);
    await snap(page, `${cfg.screenshots}/${name}-${w}.png`, true);
    await checkPage(page, name, w);
  }
  await page.setViewportSize(desktop);
}

step('start');
const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // One renderer for every site: the IdP's pages and the published
    // hostname's need no process of their own.
    '--disable-features=IsolateOrigins,site-per-process,Translate,OptimizationHints,MediaRouter', '--renderer-process-limit=2'],
});
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: desktop }); // the edge's own CA
  const page = await ctx.newPage();
  cdp = await ctx.newCDPSession(page);
  step('browser up');
  page.on('pageerror', e => out.consoleErrors.push('page error: ' + e.message));
  page.on('console', m => {
    // A refused API call is logged by the browser itself; the page's own errors are what count.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) out.consoleErrors.push(m.text());
  });
  page.on('dialog', d => d.accept());

  // 1. The login page; the token typed and sent with the keyboard.
  await page.goto(cfg.dashboard);
  await page.waitForSelector('input[name=token]', { timeout: T });
  await snap(page, `${cfg.screenshots}/login-desktop.png`);
  await page.setViewportSize(phone);
  await snap(page, `${cfg.screenshots}/login-phone.png`);
  out.loginOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.setViewportSize(desktop);
  await page.fill('input[name=token]', 'adit_wrong');
  await page.keyboard.press('Enter');
  await page.waitForSelector('[aria-invalid=true][name=token]', { timeout: T });
  out.wrongToken = await page.textContent('#' + (await page.getAttribute('input[name=token]', 'id')) + '-err');
  await page.fill('input[name=token]', cfg.token);
  await page.keyboard.press('Enter');
  await page.waitForSelector('h1#page-title:has-text("Tunnels")', { timeout: T });
  out.afterLoginURL = page.url();
  out.cookies = (await ctx.cookies()).map(c => ({ name: c.name, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path, domain: c.domain }));
  out.pageSeesCookie = await page.evaluate(() => document.cookie);
  step('logged in');

  // 2. The tunnel is there without connections; a connector starts and its
  // connections appear without a reload.
  const card = `.tunnel[data-tunnel="${cfg.tunnel}"]`;
  await page.waitForSelector(`${card} .badge:has-text("no connections")`, { timeout: T });
  await snap(page, `${cfg.screenshots}/tunnels-empty-desktop.png`);
  step('shot');
  await control('start');
  step('connector started');
  await page.waitForSelector(`${card} tr.conn`, { timeout: T });
  out.connRow = await page.textContent(`${card} tr.conn`);
  out.connBadge = await page.textContent(`${card} .badge`);
  step('connection appeared');
  // A tunnel made in the browser: a refused name at its field, then one
  // made, its token (with the secret the page made) shown once.
  const nt = 'form[aria-label="New tunnel"]';
  await page.fill(`${nt} input[name=name]`, 'no spaces');
  await page.click(`${nt} button[type=submit]`);
  await page.waitForSelector(`${nt} input[name=name][aria-invalid=true]`, { timeout: T });
  out.tunnelNameError = await page.textContent('#' + (await page.getAttribute(`${nt} input[name=name]`, 'id')) + '-err');
  await page.fill(`${nt} input[name=name]`, cfg.newTunnel);
  await page.click(`${nt} button[type=submit]`);
  out.tunnelToken = await page.textContent('#tunnel-token', { timeout: T });
  await page.waitForSelector(`.tunnel[data-tunnel="${cfg.newTunnel}"]`, { timeout: T });
  step('tunnel created');
  await shoot(page, 'tunnels');

  // 3. The tunnel's page: a refused publish shows its error at the field,
  // then a good one publishes, and the hostname answers.
  await page.click(`${card} h2 a`);
  await page.waitForSelector('h1#page-title:has-text("Tunnel ' + cfg.tunnel + '")', { timeout: T });
  const pub = 'form[aria-label="Publish a hostname"]';
  await page.fill(`${pub} input[name=hostname]`, cfg.appHost);
  await page.fill(`${pub} input[name=service]`, 'ftp://nowhere');
  await page.click(`${pub} button[type=submit]`);
  await page.waitForSelector(`${pub} input[name=service][aria-invalid=true]`, { timeout: T });
  const svcID = await page.getAttribute(`${pub} input[name=service]`, 'id');
  out.publishError = {
    text: await page.textContent(`#${svcID}-err`),
    describedBy: await page.getAttribute(`${pub} input[name=service]`, 'aria-describedby'),
    focused: await page.evaluate(() => document.activeElement && document.activeElement.name),
    hostnameInvalid: await page.getAttribute(`${pub} input[name=hostname]`, 'aria-invalid'),
  };
  await snap(page, `${cfg.screenshots}/tunnel-refused-desktop.png`); // the error at its field
  await page.fill(`${pub} input[name=service]`, cfg.service);
  await page.click(`${pub} button[type=submit]`);
  await page.waitForSelector(`tr.host[data-hostname="${cfg.appHost}"]`, { timeout: T });
  out.hostRow = await page.textContent(`tr.host[data-hostname="${cfg.appHost}"]`);
  step('published');
  const app = await ctx.newPage();
  for (let i = 0; i < 2; i++) {
    const resp = await app.goto(cfg.app + '/hello');
    out.appStatus = resp.status();
    out.appBody = (await app.textContent('body')) || '';
    if (out.appStatus === 200) break;
    // Too early: once the connector reports version 1 applied, again.
    await page.waitForSelector('tr.conn td[data-label="Config version"]:text-is("1")', { timeout: T });
  }
  step('reached the hostname');

  // A refused edit of the ingress rules: the validator's error at the editor, with its line.
  const ed = 'form[aria-label="Ingress rules"]';
  await page.fill(`${ed} textarea`, 'ingress:\n  - hostname: x.localhost\n    service: nope://x\n  - service: http_status:404\n');
  await page.click(`${ed} button[type=submit]`);
  await page.waitForSelector(`${ed} textarea[aria-invalid=true]`, { timeout: T });
  const taID = await page.getAttribute(`${ed} textarea`, 'id');
  out.editorError = await page.textContent(`#${taID}-err`);
  out.editorSelection = await page.evaluate(id => { const t = document.getElementById(id); return t.value.slice(t.selectionStart, t.selectionEnd); }, taID);
  step('refused edit shown');
  // A good edit makes version 2; rolling back to 1 makes version 3.
  await page.fill(`${ed} textarea`, `ingress:\n  - hostname: ${cfg.appHost}\n    service: ${cfg.service}\n  - hostname: other.localhost\n    service: http_status:204\n  - service: http_status:404\n`);
  await page.click(`${ed} button[type=submit]`);
  await page.waitForSelector('#flash:has-text("Saved as version 2")', { timeout: T });
  step('saved');
  await page.click('button[aria-label="Roll back to version 1"]');
  await page.waitForSelector('#flash:has-text("Rolled back")', { timeout: T });
  step('rolled back');
  await page.waitForSelector('table tr:has-text("rollback to 1")', { timeout: T });
  out.history = await page.$$eval('section[aria-label="History"] tbody tr', els => els.map(e => e.textContent));
  out.editorAfterRollback = await page.inputValue(`${ed} textarea`);
  await shoot(page, 'tunnel');
  step('edited and rolled back');

  // 4. Traffic: the charts, and the live log as a request is made.
  await page.goto(cfg.dashboard + '#/traffic/' + encodeURIComponent(cfg.appHost));
  await page.waitForSelector('figure.chart >> nth=3', { timeout: T });
  await page.waitForSelector('p.status:has-text("Streaming")', { timeout: T });
  await app.goto(cfg.app + '/from-the-test');
  out.logLine = await page.textContent('.log li.req:has-text("/from-the-test")', { timeout: T });
  // The charts refresh every 10 s; a reload shows this hour's requests now.
  await page.reload();
  await page.waitForSelector('figure.chart >> nth=3', { timeout: T });
  out.chartLabels = await page.$$eval('figure.chart svg', els => els.map(e => e.getAttribute('aria-label')));
  out.trafficSummary = await page.textContent('section[aria-label="Hostname"]');
  await shoot(page, 'traffic');
  step('traffic');

  // 5. The other pages.
  for (const [name, ready, act] of [['access', 'section[aria-label="Identity providers"] p, section[aria-label="Identity providers"] table', async () => {
      // A service token: a refused duration at its field, then one made, its secret shown once.
      const f = 'form[aria-label="New service token"]';
      await page.fill(`${f} input[name=name]`, 'ci');
      await page.fill(`${f} input[name=duration]`, 'forever');
      await page.click(`${f} button[type=submit]`);
      await page.waitForSelector(`${f} input[name=duration][aria-invalid=true]`, { timeout: T });
      out.tokenError = await page.textContent('#' + (await page.getAttribute(`${f} input[name=duration]`, 'id')) + '-err');
      await page.fill(`${f} input[name=duration]`, '24h');
      await page.click(`${f} button[type=submit]`);
      out.tokenSecret = await page.textContent('section[aria-label="Service tokens"] .notice', { timeout: T });
      await page.waitForSelector('section[aria-label="Service tokens"] td:has-text("ci")', { timeout: T });
    }],
    ['shield', 'section[aria-label="WAF"] p.muted, section[aria-label="WAF"] table', async () => {
      // A refused IP rule: the error at the address field; then a good one is listed.
      const f = 'form[aria-label="Add an IP rule"]';
      await page.fill(`${f} input[name=hostname]`, cfg.appHost);
      await page.fill(`${f} input[name=cidr]`, '10.0.0.300/8');
      await page.click(`${f} button[type=submit]`);
      await page.waitForSelector(`${f} input[name=cidr][aria-invalid=true]`, { timeout: T });
      out.ipRuleError = await page.textContent('#' + (await page.getAttribute(`${f} input[name=cidr]`, 'id')) + '-err');
      await page.fill(`${f} input[name=cidr]`, '192.0.2.0/24');
      await page.click(`${f} button[type=submit]`);
      await page.waitForSelector('section[aria-label="IP rules"] td:has-text("192.0.2.0/24")', { timeout: T });
      // A rate limit: a refused "counted by" at its field, then one listed.
      const rl = 'form[aria-label="Add a rate limit"]';
      await page.fill(`${rl} input[name=hostname]`, cfg.appHost);
      await page.fill(`${rl} input[name=requests]`, '100');
      await page.fill(`${rl} input[name=by]`, 'cookie');
      await page.click(`${rl} button[type=submit]`);
      await page.waitForSelector(`${rl} input[name=by][aria-invalid=true]`, { timeout: T });
      out.rateLimitError = await page.textContent('#' + (await page.getAttribute(`${rl} input[name=by]`, 'id')) + '-err');
      await page.fill(`${rl} input[name=by]`, 'ip');
      await page.click(`${rl} button[type=submit]`);
      await page.waitForSelector('section[aria-label="Rate limits"] td:has-text("100 per 60 s")', { timeout: T });
      // A WAF setting: a refused threshold at its field, then one listed
      // (mode off: no rule set to compile on a busy machine).
      const waf = 'form[aria-label="Set a hostname\'s WAF"]';
      await page.fill(`${waf} input[name=hostname]`, cfg.appHost);
      await page.selectOption(`${waf} select[name=mode]`, 'off');
      await page.selectOption(`${waf} select[name=paranoia]`, '2');
      await page.fill(`${waf} input[name=inbound_threshold]`, '20000');
      await page.click(`${waf} button[type=submit]`);
      await page.waitForSelector(`${waf} input[name=inbound_threshold][aria-invalid=true]`, { timeout: T });
      out.wafError = await page.textContent('#' + (await page.getAttribute(`${waf} input[name=inbound_threshold]`, 'id')) + '-err');
      await page.selectOption(`${waf} select[name=mode]`, 'off');
      await page.selectOption(`${waf} select[name=paranoia]`, '2');
      await page.fill(`${waf} input[name=inbound_threshold]`, '12');
      await page.click(`${waf} button[type=submit]`);
      out.wafRow = await page.textContent(`section[aria-label="WAF"] tr:has-text("${cfg.appHost}")`, { timeout: T });
      // Deleting the IP rule (the confirmation is accepted).
      await page.click(`button[aria-label="Delete IP rule 192.0.2.0/24 of ${cfg.appHost}"]`);
      await page.waitForSelector('section[aria-label="IP rules"] td:has-text("192.0.2.0/24")', { state: 'detached', timeout: T });
      out.ipRuleDeleted = true;
    }],
    ['certificates', 'section[aria-label="Certificates"] p, section[aria-label="Certificates"] table', async () => {
      // A brought certificate: one that does not cover the hostname is
      // refused at the certificate's field, then it is saved for one it covers.
      const f = 'form[aria-label="Bring a certificate"]';
      await page.fill(`${f} input[name=hostname]`, 'other.example');
      await page.fill(`${f} textarea[name=cert_pem]`, cfg.certPEM);
      await page.fill(`${f} textarea[name=key_pem]`, cfg.keyPEM);
      await page.click(`${f} button[type=submit]`);
      await page.waitForSelector(`${f} textarea[name=cert_pem][aria-invalid=true]`, { timeout: T });
      out.certError = await page.textContent('#' + (await page.getAttribute(`${f} textarea[name=cert_pem]`, 'id')) + '-err');
      await page.fill(`${f} input[name=hostname]`, cfg.appHost);
      await page.click(`${f} button[type=submit]`);
      out.certRow = await page.textContent(`section[aria-label="Certificates"] tr:has-text("${cfg.appHost}"):has-text("manual")`, { timeout: T });
    }],
    ['tokens', 'section[aria-label="API tokens"] table', async () => {
      // An API token: a refused name at its field, then one made (shown
      // once) and revoked.
      const f = 'form[aria-label="New API token"]';
      await page.fill(`${f} input[name=name]`, 'no spaces');
      await page.click(`${f} button[type=submit]`);
      await page.waitForSelector(`${f} input[name=name][aria-invalid=true]`, { timeout: T });
      out.apiTokenError = await page.textContent('#' + (await page.getAttribute(`${f} input[name=name]`, 'id')) + '-err');
      await page.fill(`${f} input[name=name]`, 'ci-bot');
      await page.click(`${f} button[type=submit]`);
      out.apiToken = await page.textContent('#api-token', { timeout: T });
      await page.waitForSelector('tr.token[data-token-name="ci-bot"]', { timeout: T });
      await page.click('tr.token[data-token-name="ci-bot"] button');
      await page.waitForSelector('tr.token[data-token-name="ci-bot"]', { state: 'detached', timeout: T });
      out.apiTokenRevoked = true;
    }],
    ['edges', 'section[aria-label="Edges of the fleet"] p, section[aria-label="Edges of the fleet"] table']]) {
    await page.goto(cfg.dashboard + '#/' + name);
    await page.waitForSelector(ready, { timeout: T });
    if (act) await act();
    step(name + ' acted');
    await shoot(page, name);
    step(name + ' shot');
  }
  out.edges = await page.textContent('section[aria-label="Edges of the fleet"]');

  // 6. The keyboard: Tab from the top reaches the skip link, then the
  // navigation; Enter follows a link.
  await page.goto(cfg.dashboard + '#/tunnels');
  await page.reload(); // the keyboard starts at the top of a freshly loaded page
  await page.waitForSelector('h1#page-title:has-text("Tunnels")', { timeout: T });
  const tabs = [];
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press('Tab');
    const f = await page.evaluate(() => {
      const el = document.activeElement;
      const st = getComputedStyle(el);
      return { text: (el.textContent || '').trim(), tag: el.tagName, outline: st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) >= 2 };
    });
    tabs.push(f);
    if (f.text === 'Access') break;
  }
  out.tabs = tabs;
  await page.keyboard.press('Enter');
  await page.waitForSelector('h1#page-title:has-text("Access")', { timeout: T });
  out.keyboardURL = page.url();
  out.focusAfterNav = await page.evaluate(() => document.activeElement.id);
  step('keyboard');

  // 7. The connector stops: its connections disappear without a reload.
  await page.goto(cfg.dashboard + '#/tunnels');
  await page.waitForSelector(`${card} tr.conn`, { timeout: T });
  await control('stop');
  await page.waitForSelector(`${card} .badge:has-text("no connections")`, { timeout: T });
  out.connsAfterStop = await page.$$eval(`${card} tr.conn`, els => els.length);
  step('connection disappeared');

  // 8. Logout: back at the login form; the old cookie no longer works.
  const old = (await ctx.cookies()).find(c => c.name === '__Host-adit_session');
  await page.click('#logout');
  await page.waitForSelector('input[name=token]', { timeout: T });
  out.cookiesAfterLogout = (await ctx.cookies()).map(c => c.name);
  if (old) await ctx.addCookies([old]);
  out.oldCookieStatus = await page.evaluate(async () => (await fetch('/v1/tunnels', { headers: { 'X-Adit-Csrf': '1' } })).status);
  out.noCSRFStatus = await page.evaluate(async () => (await fetch('/v1/tunnels')).status);
  await page.waitForSelector('#sso-login', { timeout: T });
  await shoot(page, 'logged-out');
  step('logged out');

  // 9. Admin SSO through the identity provider: someone not allowed is
  // back at the login page with the reason; an allowed person is in, with
  // the same session cookie.
  out.ssoButton = await page.textContent('#sso-login');
  const idpLogin = async who => {
    await page.click('#sso-login');
    await page.waitForSelector('#username', { timeout: T });
    await page.fill('#username', who.user);
    await page.fill('#password', who.password);
    await Promise.all([page.waitForURL(u => !u.toString().startsWith(cfg.issuer), { timeout: T }), page.click('#submit')]);
  };
  await idpLogin(cfg.refused);
  await page.waitForSelector('.login p.form-error:has-text("may not administer")', { timeout: T });
  out.ssoDenied = await page.textContent('.login p.form-error');
  out.ssoDeniedURL = page.url();
  step('SSO refused');
  await idpLogin(cfg.allowed);
  await page.waitForSelector('h1#page-title:has-text("Tunnels")', { timeout: T });
  out.ssoAfterLoginURL = page.url();
  out.ssoCookies = (await ctx.cookies(cfg.dashboard)).map(c => ({ name: c.name, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path, domain: c.domain }));
  out.ssoAPIStatus = await page.evaluate(async () => (await fetch('/v1/tunnels', { headers: { 'X-Adit-Csrf': '1' } })).status);
  out.ssoNoCSRFStatus = await page.evaluate(async () => (await fetch('/v1/tunnels')).status);
  await page.click('#logout');
  await page.waitForSelector('input[name=token]', { timeout: T });
  step('SSO login');
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));

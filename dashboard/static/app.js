// The adit dashboard: plain JavaScript, no build step, no dependencies.
// Every action is a call of the edge's /v1 API (docs/openapi.yaml) with the
// session cookie and the X-Adit-Csrf header; the page never builds HTML
// from strings (all text goes in as text nodes).
'use strict';

const CSRF = { 'X-Adit-Csrf': '1' };

// ---------- small DOM helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const svgNS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') el.textContent = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

function code(text) { return h('code', {}, text); }

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function ago(iso) {
  const t = Date.parse(iso);
  if (isNaN(t)) return '';
  let sec = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (sec < 60) return sec + ' s ago';
  if (sec < 3600) return Math.floor(sec / 60) + ' min ago';
  if (sec < 86400) return Math.floor(sec / 3600) + ' h ago';
  return Math.floor(sec / 86400) + ' d ago';
}

// A <time> that says how long ago; refreshTimes keeps it current.
function since(iso) {
  return h('time', { datetime: iso, title: fmtTime(iso), 'data-ago': '1' }, ago(iso));
}

function refreshTimes(root) {
  for (const t of root.querySelectorAll('time[data-ago]')) t.textContent = ago(t.getAttribute('datetime'));
}

function fmtBytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

// b64 is the standard, padded base64 of bytes.
function b64(bytes) { return btoa(String.fromCharCode(...bytes)); }

// tunnelToken is a tunnel's token as `adit tunnel token` prints it
// (package credentials): base64 of {"a": account tag, "t": tunnel ID,
// "s": secret, "e": the edges, "c": their CA}; the account tag is the
// first 32 hex digits of the sha256 of the edge's CA.
async function tunnelToken(id, secret) {
  const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(edgeInfo.ca_pem || '')));
  const tag = [...sum].map(b => b.toString(16).padStart(2, '0')).join('').slice(0, 32);
  const j = { a: tag, t: id, s: secret };
  if (edgeInfo.tunnel_addrs && edgeInfo.tunnel_addrs.length) j.e = edgeInfo.tunnel_addrs;
  if (edgeInfo.ca_pem) j.c = edgeInfo.ca_pem;
  return btoa(JSON.stringify(j));
}

// table: columns are [label, cell(row)] pairs; each cell carries its label
// (shown before it on a phone, where a row becomes a card).
function table(columns, rows, caption, rowAttrs) {
  return h('table', {},
    caption ? h('caption', { class: 'muted' }, caption) : null,
    h('thead', {}, h('tr', {}, columns.map(([label]) => h('th', { scope: 'col' }, label)))),
    h('tbody', {}, rows.map(r => h('tr', rowAttrs ? rowAttrs(r) : {},
      columns.map(([label, cell]) => h('td', { 'data-label': label }, cell(r)))))));
}

// ---------- the API ----------

class APIError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const opts = { method, headers: { ...CSRF }, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, opts);
  } catch (e) {
    throw new APIError(0, 'the edge did not answer (' + e.message + ')', 'network');
  }
  if (r.status === 204) return null;
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) {
    const err = new APIError(r.status, (data && data.error) || r.status + ' ' + r.statusText, data && data.code);
    if (r.status === 401 && path.startsWith('/v1/')) showLogin('Your session has ended; log in again.');
    throw err;
  }
  return data;
}

const enc = encodeURIComponent;

// ---------- forms with errors at the field ----------

let uid = 0;

// field builds a labelled input. opts: type (text, password, number,
// select, textarea), options ([value, text] pairs), hint, required,
// value, wide, aliases (other words the API's errors use for it).
function field(label, name, opts = {}) {
  const id = 'f' + (++uid);
  const errId = id + '-err';
  const hintId = opts.hint ? id + '-hint' : null;
  let input;
  const common = { id, name, 'aria-describedby': [hintId, errId].filter(Boolean).join(' '), required: opts.required };
  if (opts.type === 'select') {
    input = h('select', common, (opts.options || []).map(([v, t]) => h('option', { value: v, selected: v === opts.value }, t)));
  } else if (opts.type === 'textarea') {
    input = h('textarea', { ...common, spellcheck: 'false', rows: opts.rows || 12 });
    input.value = opts.value || '';
  } else {
    input = h('input', { ...common, type: opts.type || 'text', value: opts.value, placeholder: opts.placeholder,
      autocomplete: 'off', spellcheck: 'false', min: opts.min, max: opts.max, inputmode: opts.inputmode });
  }
  input.dataset.aliases = [name, ...(opts.aliases || [])].join('|');
  return h('div', { class: 'field' + (opts.wide ? ' wide' : '') },
    h('label', { for: id }, label),
    input,
    hintId ? h('p', { class: 'hint', id: hintId }, opts.hint) : null,
    h('p', { class: 'field-error', id: errId, 'aria-live': 'polite' }));
}

// form builds a form of fields; onSubmit(values, form) runs on submit and
// its API errors are shown at the field they name.
function form(label, fields, submit, onSubmit, extra) {
  const err = h('p', { class: 'form-error', role: 'alert' });
  const btn = h('button', { type: 'submit' }, submit);
  const f = h('form', { class: 'stack', 'aria-label': label, novalidate: true }, fields, h('div', { class: 'actions' }, btn, extra), err);
  f.addEventListener('submit', async ev => {
    ev.preventDefault();
    clearErrors(f);
    const values = {};
    for (const el of f.elements) if (el.name) values[el.name] = el.value;
    btn.disabled = true;
    try {
      await onSubmit(values, f);
    } catch (e) {
      showError(f, e);
    } finally {
      btn.disabled = false;
    }
  });
  return f;
}

function clearErrors(f) {
  for (const el of f.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const el of f.querySelectorAll('.field-error, .form-error')) el.textContent = '';
}

// showError puts an error at the field its message names first (the API's
// messages name the field: "hostname ...", "rule 2: service ...", "cidr
// ..."), else under the form; a "(line N)" selects that line of a textarea.
function showError(f, e) {
  const msg = e instanceof Error ? e.message : String(e);
  let best = null, at = Infinity;
  for (const el of f.elements) {
    if (!el.dataset || !el.dataset.aliases) continue;
    for (const word of el.dataset.aliases.split('|')) {
      const m = new RegExp('(^|[^a-z_])' + word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '($|[^a-z_])', 'i').exec(msg);
      if (m && m.index < at) { at = m.index; best = el; }
    }
  }
  if (!best) {
    const ta = [...f.elements].filter(el => el.tagName === 'TEXTAREA');
    if (ta.length === 1 && /(^|\s)(ingress|yaml|line \d+)/i.test(msg)) best = ta[0];
  }
  if (!best) {
    f.querySelector('.form-error').textContent = msg;
    return;
  }
  best.setAttribute('aria-invalid', 'true');
  let line = /\(line (\d+)\)/.exec(msg);
  line = line ? Number(line[1]) : best.tagName === 'TEXTAREA' ? ruleLine(best.value, msg) : 0;
  document.getElementById(best.id + '-err').textContent = (line ? 'Line ' + line + ': ' : '') + msg;
  best.focus();
  if (line && best.tagName === 'TEXTAREA') selectLine(best, line);
}

// ruleLine finds the line an "ingress: rule N: FIELD ..." error is about
// in a config.yml: the rule's FIELD line, or its first line; 0 if unsure.
function ruleLine(text, msg) {
  const m = /rule (\d+): (\w+)/.exec(msg);
  if (!m) return 0;
  const lines = text.split('\n');
  const top = lines.findIndex(l => /^ingress:\s*$/.test(l));
  if (top < 0) return 0;
  let indent = -1, n = 0, start = -1, end = lines.length;
  for (let i = top + 1; i < lines.length; i++) {
    const l = lines[i];
    if (/^[^\s#-]/.test(l)) { end = i; break; }
    const d = /^(\s*)-\s/.exec(l);
    if (d && (indent < 0 || d[1].length === indent)) {
      indent = d[1].length;
      n++;
      if (n === Number(m[1])) start = i;
      else if (start >= 0) { end = i; break; }
    }
  }
  if (start < 0) return 0;
  const key = new RegExp('^\\s*(-\\s+)?' + m[2] + ':');
  for (let i = start; i < end; i++) if (key.test(lines[i])) return i + 1;
  return start + 1;
}

function selectLine(ta, n) {
  const lines = ta.value.split('\n');
  if (n < 1 || n > lines.length) return;
  let start = 0;
  for (let i = 0; i < n - 1; i++) start += lines[i].length + 1;
  ta.setSelectionRange(start, start + lines[n - 1].length);
}

function splitList(v) { return (v || '').split(',').map(x => x.trim()).filter(Boolean); }

function confirmDo(question, fn) {
  return async () => {
    if (!window.confirm(question)) return;
    try {
      await fn();
    } catch (e) {
      flash(e.message, true);
    }
  };
}

// flash shows a message at the top of the page, for what has no field.
function flash(msg, bad) {
  const el = document.getElementById('flash');
  if (!el) return;
  el.className = bad ? 'form-error' : 'notice';
  el.textContent = msg;
}

// ---------- the frame: login, navigation, pages ----------

let page = { gen: 0, cleanups: [] };

function leavePage() {
  page.gen++;
  for (const c of page.cleanups) { try { c(); } catch (e) { /* gone */ } }
  page.cleanups = [];
}

// poll runs fn now and every ms while the page is shown.
function poll(fn, ms) {
  const gen = page.gen;
  let timer = null;
  const run = async () => {
    if (gen !== page.gen) return;
    try { await fn(); } catch (e) { /* fn shows its own errors */ }
    if (gen === page.gen) timer = setTimeout(run, ms);
  };
  page.cleanups.push(() => clearTimeout(timer));
  run();
}

function view(title) {
  leavePage();
  const main = document.getElementById('main');
  main.replaceChildren(h('h1', { id: 'page-title' }, title), h('div', { id: 'flash', role: 'status' }));
  document.title = title + ' · adit';
  return main;
}

function section(title, ...children) {
  return h('section', { class: 'card', 'aria-label': title }, h('h2', {}, title), children);
}

let edgeInfo = null;

// sso is the administrators' identity provider (GET /session/sso), once
// asked: null when there is none.
let sso;

function showLogin(message) {
  leavePage();
  document.getElementById('top').hidden = true;
  const main = document.getElementById('main');
  document.title = 'Log in · adit';
  const f = form('Log in', [
    field('API token', 'token', { type: 'password', required: true,
      hint: 'The edge\'s admin token: the admin.token file in its data directory (`adit edge` prints where), or one from `adit admin token rotate`. It is exchanged for a session cookie and not kept by the page.' }),
  ], 'Log in', async v => {
    await api('POST', '/session', { token: v.token });
    f.reset();
    await start(true);
  });
  const ssoBox = h('div', { class: 'sso' });
  const card = h('section', { class: 'card login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in to adit'),
    message ? h('p', { class: 'form-error', role: 'alert' }, message) : null,
    ssoBox,
    f);
  main.replaceChildren(card);
  f.querySelector('input').focus();
  const offer = info => {
    if (!info) return;
    ssoBox.replaceChildren(
      h('a', { class: 'button', href: info.login_url, id: 'sso-login' }, 'Sign in with ' + info.idp),
      h('p', { class: 'muted or' }, 'or paste an API token:'));
  };
  if (sso !== undefined) { offer(sso); return; }
  api('GET', '/session/sso').then(info => { sso = info; offer(info); }, () => { sso = null; });
}

async function logout() {
  try { await api('DELETE', '/session'); } catch (e) { /* the cookie goes anyway */ }
  edgeInfo = null;
  showLogin('You are logged out.');
}

const routes = [
  [/^\/tunnels$/, pageTunnels],
  [/^\/tunnels\/([^/]+)$/, pageTunnel],
  [/^\/traffic(?:\/([^/]+))?$/, pageTraffic],
  [/^\/access$/, pageAccess],
  [/^\/shield$/, pageShield],
  [/^\/certificates$/, pageCertificates],
  [/^\/edges$/, pageEdges],
  [/^\/tokens$/, pageTokens],
];

function route() {
  if (!edgeInfo) return;
  const path = location.hash.replace(/^#/, '') || '/tunnels';
  if (!path.startsWith('/')) return; // an in-page anchor
  for (const a of document.querySelectorAll('.top nav a')) {
    const target = a.getAttribute('href').slice(1);
    if (path === target || path.startsWith(target + '/')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const [re, fn] of routes) {
    const m = re.exec(path);
    if (m) {
      fn(...m.slice(1).map(x => x === undefined ? undefined : decodeURIComponent(x)));
      return;
    }
  }
  const main = view('Not found');
  main.append(h('p', {}, 'No such page: ', code(path), '. ', h('a', { href: '#/tunnels' }, 'Tunnels')));
}

// start shows the dashboard if the session works, else the login form;
// focusMain moves the focus to the page (after a login: the form is gone).
async function start(focusMain) {
  try {
    edgeInfo = await api('GET', '/v1/edge');
  } catch (e) {
    if (e.status === 401) { showLogin(); return; }
    document.getElementById('main').replaceChildren(h('p', { class: 'form-error', role: 'alert' }, 'The edge\'s API failed: ' + e.message));
    return;
  }
  document.getElementById('top').hidden = false;
  document.getElementById('who').textContent = 'edge ' + edgeInfo.node;
  if (!location.hash.startsWith('#/')) history.replaceState(null, '', '#/tunnels');
  route();
  if (focusMain) document.getElementById('main').focus();
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('logout').addEventListener('click', logout);
  document.getElementById('skip').addEventListener('click', ev => {
    ev.preventDefault();
    document.getElementById('main').focus();
  });
  window.addEventListener('hashchange', () => {
    route();
    if (location.hash.startsWith('#/')) document.getElementById('main').focus();
  });
  // An identity provider's login that failed comes back as ?sso_error=.
  const ssoError = new URLSearchParams(location.search).get('sso_error');
  if (ssoError !== null) {
    history.replaceState(null, '', location.pathname + location.hash);
    showLogin(ssoError);
    return;
  }
  start();
});

// ---------- tunnels ----------

function connectionsTable(conns) {
  if (!conns || conns.length === 0) return h('p', { class: 'muted' }, 'No live connections.');
  return table([
    ['Edge', c => c.edge_node],
    ['Protocol', c => c.protocol],
    ['Version', c => c.version],
    ['Config version', c => configState(c)],
    ['Since', c => since(c.since)],
    ['Connector', c => h('span', { class: 'mono', title: c.connector_id }, c.origin_ip + ' #' + c.index)],
  ], conns, null, c => ({ class: 'conn', 'data-conn-id': c.id }));
}

function configState(c) {
  if (c.config_local) return 'local file';
  const parts = [c.config_version ? String(c.config_version) : '—'];
  if (c.config_failed_version) parts.push(' (', h('span', { class: 'badge bad', title: c.config_error || '' }, 'v' + c.config_failed_version + ' failed'), ')');
  return h('span', {}, parts);
}

function tunnelBadge(t) {
  const n = (t.connections || []).length;
  return n ? h('span', { class: 'badge ok' }, n === 1 ? '1 connection' : n + ' connections')
    : h('span', { class: 'badge' }, 'no connections');
}

function pageTunnels() {
  const main = view('Tunnels');
  main.append(h('p', { class: 'muted' }, 'Live connections update every 2 seconds.'));
  const box = h('div', { id: 'tunnels', 'aria-live': 'polite' });
  const status = h('p', { class: 'status' });
  const made = h('div', { 'aria-live': 'polite' });
  let last = '';
  main.append(box, status, section('New tunnel', made, form('New tunnel', [
    field('Name', 'name', { required: true, placeholder: 'web', hint: 'Letters, digits, ".", "_" and "-".' }),
  ], 'Create tunnel', async (v, f) => {
    // The secret is made here and leaves the page only in the token shown
    // once; the edge keeps its sha256.
    const secret = b64(crypto.getRandomValues(new Uint8Array(32)));
    const t = await api('POST', '/v1/tunnels', { name: v.name.trim(), tunnel_secret: secret });
    f.reset();
    made.replaceChildren(h('div', { class: 'notice' },
      h('p', {}, 'Tunnel ', code(t.name), ' created. Copy its token now: it holds the tunnel\'s secret and is not shown again.'),
      h('p', {}, 'Run it with ', code('adit tunnel run --token-file FILE'), ' (the token in FILE).'),
      h('p', { class: 'secret' }, 'Token: ', h('code', { id: 'tunnel-token' }, await tunnelToken(t.id, secret)))));
    last = '';
    await refresh();
  })));
  const refresh = async () => {
    let ts;
    try {
      ts = await api('GET', '/v1/tunnels');
      status.textContent = '';
    } catch (e) {
      status.textContent = 'Could not refresh: ' + e.message;
      return;
    }
    const json = JSON.stringify(ts);
    if (json === last) { refreshTimes(box); return; }
    last = json;
    if (ts.length === 0) {
      box.replaceChildren(h('p', {}, 'No tunnels yet. Create one with ', code('adit tunnel create NAME'), '.'));
      return;
    }
    box.replaceChildren(...ts.map(t => h('article', { class: 'card tunnel', 'data-tunnel': t.name, 'aria-label': 'Tunnel ' + t.name },
      h('div', { class: 'tunnel-head' },
        h('h2', {}, h('a', { href: '#/tunnels/' + enc(t.id) }, t.name)),
        tunnelBadge(t),
        h('span', { class: 'mono muted' }, t.id)),
      connectionsTable(t.connections))));
  };
  poll(refresh, 2000);
}

// ---------- one tunnel: hostnames, ingress rules, history ----------

function pageTunnel(id) {
  const main = view('Tunnel');
  const title = main.querySelector('h1');
  const head = h('p', { class: 'mono muted' }, id);
  const conns = h('div', { 'aria-live': 'polite' });
  const hosts = h('div');
  const history = h('div');
  const editorBox = h('div');
  main.append(head,
    section('Connections', conns),
    section('Hostnames', hosts, h('h3', {}, 'Publish a hostname'), publishForm()),
    section('Ingress rules', h('p', { class: 'muted' },
      'The tunnel\'s remotely-managed configuration (config.yml\'s ingress, originRequest): what connectors started without a config file run. Saving makes a new version; connectors apply it within seconds.'), editorBox),
    section('History', history));

  let tunnel = null;
  let lastConns = '';
  poll(async () => {
    try {
      tunnel = await api('GET', '/v1/tunnels/' + enc(id));
    } catch (e) {
      conns.replaceChildren(h('p', { class: 'form-error' }, e.message));
      return;
    }
    title.textContent = 'Tunnel ' + tunnel.name;
    document.title = 'Tunnel ' + tunnel.name + ' · adit';
    const json = JSON.stringify(tunnel.connections || []);
    if (json === lastConns) { refreshTimes(conns); return; }
    lastConns = json;
    conns.replaceChildren(connectionsTable(tunnel.connections));
  }, 2000);

  async function load() {
    let cfg = null;
    try {
      cfg = await api('GET', '/v1/tunnels/' + enc(id) + '/configurations');
    } catch (e) {
      if (e.status !== 404) flash(e.message, true);
    }
    let routes = [];
    try { routes = (await api('GET', '/v1/routes')).filter(r => r.tunnel_id === id || (tunnel && r.tunnel_id === tunnel.id)); } catch (e) { flash(e.message, true); }
    renderHosts(cfg, routes);
    renderEditor(cfg);
    renderHistory(cfg);
  }

  function renderHosts(cfg, routes) {
    const rules = (cfg && cfg.config && cfg.config.ingress) || [];
    const rows = rules.filter(r => r.hostname).map(r => ({ hostname: r.hostname, path: r.path || '', service: r.service, routed: routes.some(x => x.hostname === r.hostname.toLowerCase()) }));
    for (const r of routes) if (!rows.some(x => x.hostname.toLowerCase() === r.hostname)) rows.push({ hostname: r.hostname, path: '', service: '(the catch-all rule)', routed: true, routeOnly: true });
    if (rows.length === 0) {
      hosts.replaceChildren(h('p', { class: 'muted' }, 'No hostname is published on this tunnel.'));
      return;
    }
    hosts.replaceChildren(table([
      ['Hostname', r => r.routed ? h('a', { href: '#/traffic/' + enc(r.hostname.toLowerCase()) }, r.hostname) : r.hostname],
      ['Path', r => r.path ? code(r.path) : 'all'],
      ['Service', r => code(r.service)],
      ['Route', r => r.routed ? h('span', { class: 'badge ok' }, 'routed') : h('span', { class: 'badge warn' }, 'not routed')],
      ['', r => h('button', { type: 'button', class: 'danger small', 'aria-label': 'Unpublish ' + r.hostname,
        onclick: confirmDo('Unpublish ' + r.hostname + '? Its rules and its route go.', async () => {
          if (r.routeOnly) await api('DELETE', '/v1/routes/' + enc(r.hostname));
          else await api('DELETE', '/v1/tunnels/' + enc(id) + '/published/' + enc(r.hostname));
          flash(r.hostname + ' unpublished.');
          await load();
        }) }, 'Unpublish')],
    ], rows, null, r => ({ class: 'host', 'data-hostname': r.hostname })));
  }

  function publishForm() {
    return form('Publish a hostname', [
      field('Hostname', 'hostname', { required: true, placeholder: 'app.example.com' }),
      field('Service', 'service', { required: true, placeholder: 'http://localhost:8000', hint: 'http(s)://, unix:, tcp://, ssh://, http_status:NNN, hello_world' }),
      field('Path', 'path', { placeholder: '^/api/', hint: 'A regular expression; empty: every path.' }),
    ], 'Publish', async (v, f) => {
      const tc = await api('POST', '/v1/tunnels/' + enc(id) + '/published', { hostname: v.hostname.trim(), service: v.service.trim(), path: v.path.trim() || undefined });
      f.reset();
      flash(v.hostname.trim() + ' published (configuration version ' + tc.version + ').');
      await load();
    });
  }

  function renderEditor(cfg) {
    const ta = field('Configuration (YAML)', 'yaml', { type: 'textarea', wide: true, rows: 14,
      value: cfg ? cfg.yaml : 'ingress:\n  - hostname: app.example.com\n    service: http://localhost:8000\n  - service: http_status:404\n',
      aliases: ['ingress', 'originRequest', 'warp-routing'],
      hint: cfg ? 'Version ' + cfg.version + ' (' + cfg.change + '), ' + fmtTime(cfg.created_at) + '.' : 'No configuration yet: this is an example.' });
    editorBox.replaceChildren(form('Ingress rules', [ta], 'Save as a new version', async () => {
      const tc = await api('PUT', '/v1/tunnels/' + enc(id) + '/configurations', { yaml: editorBox.querySelector('textarea').value });
      flash('Saved as version ' + tc.version + '.');
      await load();
    }));
  }

  async function renderHistory(cfg) {
    if (!cfg) { history.replaceChildren(h('p', { class: 'muted' }, 'No versions yet.')); return; }
    let list;
    try { list = await api('GET', '/v1/tunnels/' + enc(id) + '/configurations/history'); } catch (e) { history.replaceChildren(h('p', { class: 'form-error' }, e.message)); return; }
    const shown = h('div');
    history.replaceChildren(table([
      ['Version', v => String(v.version)],
      ['Change', v => v.change],
      ['Rules', v => String(v.rules)],
      ['Created', v => since(v.created_at)],
      ['', v => h('span', {},
        h('button', { type: 'button', class: 'secondary small', 'aria-label': 'Show version ' + v.version, onclick: async () => {
          try {
            const full = await api('GET', '/v1/tunnels/' + enc(id) + '/configurations?version=' + v.version);
            shown.replaceChildren(h('h3', {}, 'Version ' + v.version), h('pre', { tabindex: '0', 'aria-label': 'Version ' + v.version }, full.yaml));
          } catch (e) { flash(e.message, true); }
        } }, 'Show'), ' ',
        v.version === cfg.version ? h('span', { class: 'badge ok' }, 'current') :
          h('button', { type: 'button', class: 'secondary small', 'aria-label': 'Roll back to version ' + v.version,
            onclick: confirmDo('Roll back to version ' + v.version + '? Its content becomes a new version.', async () => {
              const tc = await api('POST', '/v1/tunnels/' + enc(id) + '/configurations/rollback', { version: v.version });
              flash('Rolled back: version ' + tc.version + ' has the content of version ' + v.version + '.');
              await load();
            }) }, 'Roll back'))],
    ], list), shown);
  }

  load();
}

// ---------- traffic ----------

function pageTraffic(host) {
  const main = view('Traffic');
  main.append(h('p', { class: 'muted' }, 'Per minute over the last hour, as counted by edge ', code(edgeInfo.node), ' (each edge of a fleet counts what it serves), with the live request log beside.'));
  const pick = h('div');
  const charts = h('div', { class: 'charts' });
  const log = h('ol', { class: 'log', 'aria-label': 'Live requests, newest first' });
  const logStatus = h('p', { class: 'status', role: 'status' });
  main.append(section('Hostname', pick),
    h('div', { class: 'grid2' },
      section('Last hour', charts),
      section('Live requests', logStatus, log)));

  (async () => {
    let summary = { hosts: [] }, routes = [];
    try {
      [summary, routes] = await Promise.all([api('GET', '/v1/traffic'), api('GET', '/v1/routes')]);
    } catch (e) { flash(e.message, true); }
    const names = [...new Set([...routes.map(r => r.hostname), ...summary.hosts.map(x => x.hostname)])].sort();
    if (!host && names.length) host = names[0];
    const sel = field('Hostname', 'hostname', { type: 'select', value: host, options: names.map(n => [n, n]) });
    sel.querySelector('select').addEventListener('change', ev => { location.hash = '#/traffic/' + enc(ev.target.value); });
    pick.replaceChildren(names.length ? sel : h('p', {}, 'No hostname is routed yet.'),
      summary.hosts.length ? table([
        ['Hostname', x => h('a', { href: '#/traffic/' + enc(x.hostname) }, x.hostname)],
        ['Requests', x => String(x.requests)],
        ['Errors', x => String(x.errors)],
        ['In', x => fmtBytes(x.bytes_in)],
        ['Out', x => fmtBytes(x.bytes_out)],
      ], summary.hosts, 'The last hour, every hostname') : null);
    if (!host) return;
    poll(async () => {
      try {
        drawTraffic(charts, await api('GET', '/v1/traffic/' + enc(host)));
      } catch (e) {
        charts.replaceChildren(h('p', { class: 'form-error' }, e.message));
      }
    }, 10000);
    const r = routes.find(x => x.hostname === host);
    if (!r) { logStatus.textContent = 'The hostname is not routed: no requests to show.'; return; }
    tail(r.tunnel_id, host, log, logStatus);
  })();
}

function drawTraffic(box, t) {
  const m = t.minutes || [];
  const codes = {};
  for (const x of m) for (const [c, n] of Object.entries(x.errors || {})) codes[c] = (codes[c] || 0) + n;
  const top = Object.entries(codes).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([c]) => c);
  box.replaceChildren(
    chart('Requests per minute', [{ name: 'requests', values: m.map(x => x.requests) }], ''),
    chart('Errors per minute, by status', top.length ? top.map(c => ({ name: c, values: m.map(x => (x.errors || {})[c] || 0) }))
      : [{ name: 'errors', values: m.map(() => 0) }], ''),
    chart('Latency (ms)', [
      { name: 'p50', values: m.map(x => x.p50_ms || 0) },
      { name: 'p90', values: m.map(x => x.p90_ms || 0) },
      { name: 'p99', values: m.map(x => x.p99_ms || 0) }], ' ms'),
    chart('Bytes per minute', [
      { name: 'in', values: m.map(x => x.bytes_in) },
      { name: 'out', values: m.map(x => x.bytes_out) }], ' B', fmtBytes));
}

// chart draws lines over the last hour, one value per minute, as SVG.
function chart(title, series, unit, fmt) {
  fmt = fmt || (v => (Math.round(v * 10) / 10) + unit);
  const W = 360, H = 150, L = 58, R = 8, T = 12, B = 22; // about the size it is drawn at: text stays legible
  const n = Math.max(1, ...series.map(x => x.values.length));
  const max = Math.max(1e-9, ...series.flatMap(x => x.values));
  const X = i => L + (W - L - R) * (n === 1 ? 1 : i / (n - 1));
  const Y = v => T + (H - T - B) * (1 - v / max);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' },
    s('line', { class: 'grid', x1: L, x2: W - R, y1: T, y2: T }),
    s('line', { class: 'grid', x1: L, x2: W - R, y1: Y(max / 2), y2: Y(max / 2) }),
    s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }),
    s('text', { x: L - 6, y: T + 4, 'text-anchor': 'end', text: max > 1e-6 ? fmt(max) : '0' }),
    s('text', { x: L - 6, y: H - B, 'text-anchor': 'end', text: '0' }),
    s('text', { x: L, y: H - 6, text: '-60 min' }),
    s('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', text: '-30 min' }),
    s('text', { x: W - R, y: H - 6, 'text-anchor': 'end', text: 'now' }),
    series.map((x, i) => s('polyline', { class: 's' + i, points: x.values.map((v, j) => X(j).toFixed(1) + ',' + Y(v).toFixed(1)).join(' ') })));
  const sum = series.map(x => x.name + ': last ' + fmt(x.values[x.values.length - 1] || 0) + ', peak ' + fmt(Math.max(0, ...x.values))).join('; ');
  svg.setAttribute('aria-label', title + '. ' + sum);
  return h('figure', { class: 'chart' }, h('figcaption', {}, title), svg,
    h('ul', { class: 'legend' }, series.map((x, i) => h('li', {}, h('span', { class: 'sw s' + i }), x.name))));
}

// tail shows the tunnel's request stream (GET /v1/tunnels/{id}/requests,
// what `adit tail` reads) for one hostname, newest first.
async function tail(tunnelID, host, log, status) {
  const ctl = new AbortController();
  page.cleanups.push(() => ctl.abort());
  const wildcard = host.startsWith('*.');
  const url = '/v1/tunnels/' + enc(tunnelID) + '/requests' + (wildcard ? '' : '?host=' + enc(host));
  let resp;
  try {
    resp = await fetch(url, { headers: { ...CSRF }, credentials: 'same-origin', signal: ctl.signal });
  } catch (e) {
    if (!ctl.signal.aborted) status.textContent = 'The request log stream failed: ' + e.message;
    return;
  }
  if (!resp.ok) {
    let msg = resp.status + '';
    try { msg = (await resp.json()).error; } catch (e) { /* not JSON */ }
    status.textContent = 'The request log stream failed: ' + msg;
    return;
  }
  status.textContent = 'Streaming the requests this edge answers for ' + host + '.';
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.trim()) continue;
        let e;
        try { e = JSON.parse(line); } catch (err) { continue; }
        if (e.dropped) { log.prepend(h('li', { class: 'muted' }, e.dropped + ' requests not shown (the page fell behind)')); continue; }
        if (!e.host || (wildcard && !e.host.endsWith(host.slice(1)))) continue;
        log.prepend(h('li', { class: 'req' },
          h('span', { class: 'code c' + String(e.status)[0] }, String(e.status)), ' ',
          e.method, ' ', h('span', { class: 'mono' }, e.host + e.path), ' ',
          h('span', { class: 'muted' }, e.duration_ms.toFixed(1) + ' ms · ' + new Date(e.time).toLocaleTimeString() + (e.client_ip ? ' · ' + e.client_ip : '') + ' · ' + e.request_id)));
        while (log.children.length > 100) log.lastChild.remove();
      }
    }
    status.textContent = 'The edge ended the request log stream.';
  } catch (e) {
    if (!ctl.signal.aborted) status.textContent = 'The request log stream stopped: ' + e.message;
  }
}

// ---------- Access ----------

function policyText(p) {
  const parts = [p.action + ': include ' + (p.include || []).join(', ')];
  if (p.require && p.require.length) parts.push('require ' + p.require.join(', '));
  if (p.exclude && p.exclude.length) parts.push('exclude ' + p.exclude.join(', '));
  return parts.join('; ');
}

function pageAccess() {
  const main = view('Access');
  main.append(h('p', { class: 'muted' }, 'Who may reach a hostname: applications and their policies, service tokens for machines, and the identity providers people log in with.'));
  const apps = h('div'), tokens = h('div'), idps = h('div'), secret = h('div', { 'aria-live': 'polite' });
  let appNames = [];
  const policyBox = h('div');
  main.append(
    section('Applications', apps,
      h('h3', {}, 'New application'),
      form('New application', [
        field('Name', 'name', { required: true, placeholder: 'web' }),
        field('Domain', 'domain', { required: true, placeholder: 'app.example.com/admin', hint: 'host or host/path; host may be *.example.com' }),
        field('Identity provider', 'idp', { hint: 'Empty: the only one.' }),
        field('Session duration', 'session_duration', { placeholder: '24h', aliases: ['session duration'] }),
      ], 'Create application', async (v, f) => {
        await api('POST', '/v1/access/apps', { name: v.name.trim(), domain: v.domain.trim(), idp: v.idp.trim() || undefined, session_duration: v.session_duration.trim() || undefined });
        f.reset();
        flash('Application ' + v.name.trim() + ' created.');
        await load();
      }),
      h('h3', {}, 'Add a policy'), policyBox),
    section('Service tokens', tokens, secret,
      h('h3', {}, 'New service token'),
      form('New service token', [
        field('Name', 'name', { required: true }),
        field('Duration', 'duration', { placeholder: '8760h', hint: 'From 1m to 87660h; empty: a year.' }),
      ], 'Create service token', async (v, f) => {
        const t = await api('POST', '/v1/access/service-tokens', { name: v.name.trim(), duration: v.duration.trim() || undefined });
        f.reset();
        secret.replaceChildren(h('div', { class: 'notice' },
          h('p', {}, 'Service token ', code(t.name), ' created. Copy its secret now: it is not shown again.'),
          h('p', {}, 'Client ID: ', code(t.client_id)), h('p', {}, 'Client secret: ', code(t.client_secret))));
        await load();
      })),
    section('Identity providers', idps));

  function renderPolicyForm() {
    policyBox.replaceChildren(appNames.length ? form('Add a policy', [
      field('Application', 'app', { type: 'select', options: appNames.map(n => [n, n]) }),
      field('Action', 'action', { type: 'select', options: [['allow', 'allow'], ['deny', 'deny'], ['bypass', 'bypass'], ['service_auth', 'service_auth']] }),
      field('Include', 'include', { required: true, placeholder: 'email_domain:example.com', hint: 'Comma-separated: email:, email_domain:, group:, ip:, service_token:, any_valid_service_token, everyone' }),
      field('Require', 'require', { hint: 'Comma-separated; all must match.' }),
      field('Exclude', 'exclude', { hint: 'Comma-separated; none may match.' }),
    ], 'Add policy', async (v, f) => {
      await api('POST', '/v1/access/apps/' + enc(v.app) + '/policies', { action: v.action, include: splitList(v.include), require: splitList(v.require), exclude: splitList(v.exclude) });
      f.reset();
      flash('Policy added to ' + v.app + '.');
      await load();
    }) : h('p', { class: 'muted' }, 'Create an application first.'));
  }

  async function load() {
    try {
      const list = await api('GET', '/v1/access/apps');
      appNames = list.map(a => a.name);
      apps.replaceChildren(list.length ? table([
        ['Name', a => a.name],
        ['Domain', a => code(a.domain)],
        ['IdP', a => a.idp || 'the only one'],
        ['Session', a => a.session_duration || '24h'],
        ['Policies', a => (a.policies || []).length ? h('ol', {}, a.policies.map((p, i) => h('li', {}, policyText(p), ' ',
          h('button', { type: 'button', class: 'danger small', 'aria-label': 'Delete policy ' + (i + 1) + ' of ' + a.name,
            onclick: confirmDo('Delete policy ' + (i + 1) + ' of ' + a.name + '?', async () => { await api('DELETE', '/v1/access/apps/' + enc(a.name) + '/policies/' + (i + 1)); await load(); }) }, 'Delete')))) : h('span', { class: 'badge warn' }, 'none: everyone is refused')],
        ['', a => h('button', { type: 'button', class: 'danger small', 'aria-label': 'Delete application ' + a.name,
          onclick: confirmDo('Delete application ' + a.name + '? Its hostname is then open to everyone.', async () => { await api('DELETE', '/v1/access/apps/' + enc(a.name)); await load(); }) }, 'Delete')],
      ], list) : h('p', { class: 'muted' }, 'No applications: every hostname is open.'));
      renderPolicyForm();
    } catch (e) { apps.replaceChildren(h('p', { class: 'form-error' }, e.message)); }
    try {
      const list = await api('GET', '/v1/access/service-tokens');
      tokens.replaceChildren(list.length ? table([
        ['Name', t => t.name],
        ['Client ID', t => code(t.client_id)],
        ['Created', t => since(t.created_at)],
        ['Expires', t => expiry(t.expires_at)],
        ['', t => h('button', { type: 'button', class: 'danger small', 'aria-label': 'Revoke service token ' + t.name,
          onclick: confirmDo('Revoke service token ' + t.name + '?', async () => { await api('DELETE', '/v1/access/service-tokens/' + enc(t.name)); await load(); }) }, 'Revoke')],
      ], list) : h('p', { class: 'muted' }, 'No service tokens.'));
    } catch (e) { tokens.replaceChildren(h('p', { class: 'form-error' }, e.message)); }
    try {
      const list = await api('GET', '/v1/access/idps');
      idps.replaceChildren(list.length ? table([
        ['Name', p => p.name],
        ['Issuer', p => code(p.issuer)],
        ['Client ID', p => code(p.client_id)],
        ['Scopes', p => (p.scopes || ['openid', 'email', 'profile']).join(' ')],
      ], list) : h('p', {}, 'No identity providers. Add one with ', code('adit access idp add'), '.'));
    } catch (e) { idps.replaceChildren(h('p', { class: 'form-error' }, e.message)); }
  }
  load();
}

function expiry(iso) {
  const days = (Date.parse(iso) - Date.now()) / 86400000;
  const cls = days < 0 ? 'bad' : days < 21 ? 'warn' : 'ok';
  const text = days < 0 ? 'expired' : days < 1 ? 'in ' + Math.max(0, Math.round(days * 24)) + ' h' : 'in ' + Math.floor(days) + ' days';
  return h('span', {}, h('time', { datetime: iso }, fmtTime(iso)), ' ', h('span', { class: 'badge ' + cls }, text));
}

// ---------- the shield: IP rules, rate limits, WAF ----------

function pageShield() {
  const main = view('Shield');
  main.append(h('p', { class: 'muted' }, 'IP rules, rate limits and WAF settings, per hostname ("*" is every hostname). Every edge applies a change within a second.'));
  const filter = field('Show the rules of hostname', 'filter', { placeholder: 'every hostname' });
  const ipBox = h('div'), rlBox = h('div'), wafBox = h('div');
  const filterForm = form('Filter by hostname', [filter], 'Show', async () => load());
  main.append(h('div', { class: 'card' }, filterForm),
    section('IP rules', ipBox, h('h3', {}, 'Add an IP rule'), form('Add an IP rule', [
      field('Hostname', 'hostname', { required: true, placeholder: 'app.example.com or *' }),
      field('Action', 'action', { type: 'select', options: [['deny', 'deny'], ['allow', 'allow']] }),
      field('Address or prefix', 'cidr', { required: true, placeholder: '192.0.2.0/24', aliases: ['address', 'prefix'] }),
      field('Note', 'note'),
    ], 'Add IP rule', async (v, f) => {
      await api('POST', '/v1/ip-rules', { hostname: v.hostname.trim(), action: v.action, cidr: v.cidr.trim(), note: v.note.trim() || undefined });
      f.reset(); flash('IP rule added.'); await load();
    })),
    section('Rate limits', rlBox, h('h3', {}, 'Add a rate limit'), form('Add a rate limit', [
      field('Hostname', 'hostname', { required: true, placeholder: 'app.example.com or *' }),
      field('Requests', 'requests', { type: 'number', required: true, min: 1, inputmode: 'numeric' }),
      field('Period (seconds)', 'period', { type: 'number', required: true, min: 1, value: '60', inputmode: 'numeric' }),
      field('Path', 'path', { hint: 'A regular expression; empty: every path.' }),
      field('Method', 'method', { placeholder: 'POST' }),
      field('Counted by', 'by', { placeholder: 'ip', hint: 'ip, header:NAME or access-email' }),
      field('Action', 'action', { type: 'select', options: [['block', 'block'], ['log', 'log']] }),
      field('Block for (seconds)', 'timeout', { type: 'number', min: 0, inputmode: 'numeric' }),
    ], 'Add rate limit', async (v, f) => {
      const body = { hostname: v.hostname.trim(), requests: Number(v.requests), period: Number(v.period), action: v.action };
      if (v.path.trim()) body.path = v.path.trim();
      if (v.method.trim()) body.method = v.method.trim();
      if (v.by.trim()) body.by = v.by.trim();
      if (v.timeout.trim()) body.timeout = Number(v.timeout);
      await api('POST', '/v1/rate-limits', body);
      f.reset(); flash('Rate limit added.'); await load();
    })),
    section('WAF', wafBox, h('h3', {}, 'Set a hostname\'s WAF'), form('Set a hostname\'s WAF', [
      field('Hostname', 'hostname', { required: true, placeholder: 'app.example.com or *' }),
      field('Mode', 'mode', { type: 'select', options: [['block', 'block'], ['detect', 'detect'], ['off', 'off']] }),
      field('Paranoia level', 'paranoia', { type: 'select', options: [['', 'unchanged'], ['1', '1'], ['2', '2'], ['3', '3'], ['4', '4']] }),
      field('Inbound anomaly threshold', 'inbound_threshold', { type: 'number', min: 1, inputmode: 'numeric', aliases: ['threshold'] }),
    ], 'Save WAF setting', async (v, f) => {
      const body = { mode: v.mode };
      if (v.paranoia) body.paranoia = Number(v.paranoia);
      if (v.inbound_threshold.trim()) body.inbound_threshold = Number(v.inbound_threshold);
      await api('PATCH', '/v1/waf/' + enc(v.hostname.trim()), body);
      f.reset(); flash('WAF setting saved.'); await load();
    })));

  async function load() {
    const host = filter.querySelector('input').value.trim();
    const q = host ? '?hostname=' + enc(host) : '';
    try {
      const list = await api('GET', '/v1/ip-rules' + q);
      ipBox.replaceChildren(list.length ? table([
        ['Hostname', r => r.hostname], ['Action', r => h('span', { class: 'badge ' + (r.action === 'deny' ? 'bad' : 'ok') }, r.action)],
        ['Address', r => code(r.cidr)], ['Note', r => r.note || ''], ['Created', r => since(r.created_at)],
        ['', r => h('button', { type: 'button', class: 'danger small', 'aria-label': 'Delete IP rule ' + r.cidr + ' of ' + r.hostname,
          onclick: confirmDo('Delete the IP rule ' + r.action + ' ' + r.cidr + ' of ' + r.hostname + '?', async () => { await api('DELETE', '/v1/ip-rules/' + enc(r.id)); await load(); }) }, 'Delete')],
      ], list) : h('p', { class: 'muted' }, 'No IP rules.'));
    } catch (e) { ipBox.replaceChildren(h('p', { class: 'form-error' }, e.message)); }
    try {
      const list = await api('GET', '/v1/rate-limits' + q);
      rlBox.replaceChildren(list.length ? table([
        ['Hostname', r => r.hostname], ['Limit', r => r.requests + ' per ' + r.period + ' s'],
        ['Path', r => r.path ? code(r.path) : 'all'], ['Method', r => r.method || 'all'], ['By', r => r.by || 'ip'],
        ['Action', r => r.action || 'block'], ['Block for', r => r.timeout ? r.timeout + ' s' : 'until the window has room'],
        ['', r => h('button', { type: 'button', class: 'danger small', 'aria-label': 'Delete rate limit of ' + r.hostname,
          onclick: confirmDo('Delete this rate limit of ' + r.hostname + '?', async () => { await api('DELETE', '/v1/rate-limits/' + enc(r.id)); await load(); }) }, 'Delete')],
      ], list) : h('p', { class: 'muted' }, 'No rate limits.'));
    } catch (e) { rlBox.replaceChildren(h('p', { class: 'form-error' }, e.message)); }
    try {
      let list = await api('GET', '/v1/waf');
      if (host) list = list.filter(w => w.hostname === host || w.hostname === '*');
      wafBox.replaceChildren(list.length ? table([
        ['Hostname', w => w.hostname], ['Mode', w => h('span', { class: 'badge ' + (w.mode === 'block' ? 'ok' : w.mode === 'detect' ? 'warn' : '') }, w.mode)],
        ['Paranoia', w => String(w.paranoia || 1)], ['Threshold', w => String(w.inbound_threshold || 5)],
        ['Exclusions', w => String((w.exclusions || []).length)], ['Own rules', w => String((w.rules || []).length)],
        ['Updated', w => w.updated_at ? since(w.updated_at) : ''],
        ['', w => h('button', { type: 'button', class: 'danger small', 'aria-label': 'Delete the WAF setting of ' + w.hostname,
          onclick: confirmDo('Delete the WAF setting of ' + w.hostname + '?', async () => { await api('DELETE', '/v1/waf/' + enc(w.hostname)); await load(); }) }, 'Delete')],
      ], list) : h('p', { class: 'muted' }, 'No WAF settings: the WAF is off.'));
    } catch (e) { wafBox.replaceChildren(h('p', { class: 'form-error' }, e.message)); }
  }
  load();
}

// ---------- API tokens ----------

function pageTokens() {
  const main = view('API tokens');
  main.append(h('p', { class: 'muted' }, 'Tokens for the /v1 API: the CLI (adit login), scripts, and this dashboard\'s token login. Only their sha256 is stored; revoking one ends the dashboard sessions made with it.'));
  const box = h('div'), secret = h('div', { 'aria-live': 'polite' });
  main.append(section('API tokens', box, secret, h('h3', {}, 'New API token'), form('New API token', [
    field('Name', 'name', { required: true, placeholder: 'ci', hint: 'A live token of the same name is revoked at once: this is how a token is rotated.' }),
  ], 'Create API token', async (v, f) => {
    const name = v.name.trim();
    if (!name) throw new Error('token name is empty'); // the API would rotate the admin token
    const t = await api('POST', '/v1/tokens/rotate', { name });
    f.reset();
    secret.replaceChildren(h('div', { class: 'notice' },
      h('p', {}, 'API token ', code(t.info.name), ' created', t.revoked && t.revoked.length ? ' (its predecessor revoked)' : '', '. Copy it now: it is not shown again.'),
      h('p', { class: 'secret' }, 'Token: ', h('code', { id: 'api-token' }, t.token))));
    await load();
  })));
  async function load() {
    try {
      const list = await api('GET', '/v1/tokens');
      box.replaceChildren(list.length ? table([
        ['Name', t => t.name], ['ID', t => code(t.id)], ['Edge', t => t.edge || ''], ['Created', t => since(t.created_at)],
        ['', t => h('button', { type: 'button', class: 'danger small', 'aria-label': 'Revoke API token ' + t.name + ' ' + t.id,
          onclick: confirmDo('Revoke the API token ' + t.name + ' (' + t.id + ')? Whatever uses it stops working.', async () => {
            await api('DELETE', '/v1/tokens/' + enc(t.id)); flash('API token ' + t.name + ' revoked.'); await load();
          }) }, 'Revoke')],
      ], list, null, t => ({ class: 'token', 'data-token-name': t.name })) : h('p', { class: 'muted' }, 'No live API tokens.'));
    } catch (e) { box.replaceChildren(h('p', { class: 'form-error' }, e.message)); }
  }
  load();
}

// ---------- certificates ----------

function pageCertificates() {
  const main = view('Certificates');
  main.append(h('p', { class: 'muted' }, 'The public HTTPS listener\'s certificates: ordered by ACME for each routed hostname, or brought by you.'));
  const box = h('div');
  main.append(section('Certificates', box),
    section('Bring a certificate', form('Bring a certificate', [
      field('Hostname', 'hostname', { required: true, placeholder: 'app.example.com or *.example.com' }),
      field('Certificate chain (PEM)', 'cert_pem', { type: 'textarea', wide: true, rows: 6, aliases: ['certificate', 'cert'] }),
      field('Private key (PEM)', 'key_pem', { type: 'textarea', wide: true, rows: 6, aliases: ['key'] }),
    ], 'Save certificate', async (v, f) => {
      await api('PUT', '/v1/certificates/' + enc(v.hostname.trim()), { cert_pem: v.cert_pem, key_pem: v.key_pem });
      f.reset(); flash('Certificate saved.'); await load();
    })));
  async function load() {
    try {
      const list = await api('GET', '/v1/certificates');
      box.replaceChildren(list.length ? table([
        ['Hostname', c => c.hostname], ['Source', c => c.source], ['Issuer', c => c.issuer || ''],
        ['Names', c => (c.names || []).join(', ')],
        ['Expires', c => c.not_after ? expiry(c.not_after) : h('span', { class: 'badge bad' }, 'none issued')],
        ['Last error', c => c.last_error ? h('span', { class: 'field-error' }, c.last_error) : ''],
        ['', c => h('button', { type: 'button', class: 'danger small', 'aria-label': 'Delete the certificate of ' + c.hostname,
          onclick: confirmDo('Delete the certificate of ' + c.hostname + '?', async () => { await api('DELETE', '/v1/certificates/' + enc(c.hostname)); await load(); }) }, 'Delete')],
      ], list) : h('p', { class: 'muted' }, 'No certificates (an edge without --https-addr has none).'));
    } catch (e) { box.replaceChildren(h('p', { class: 'form-error' }, e.message)); }
  }
  load();
}

// ---------- edges ----------

function pageEdges() {
  const main = view('Edges');
  const box = h('div', { 'aria-live': 'polite' });
  main.append(section('Edges of the fleet', box));
  let last = '';
  poll(async () => {
    let list;
    try {
      list = await api('GET', '/v1/edges');
    } catch (e) {
      if (e.status === 404) {
        box.replaceChildren(h('p', {}, 'One edge: ', code(edgeInfo.node), ', which connectors reach at ', (edgeInfo.tunnel_addrs || []).map(code), '. (This edge does not list a fleet.)'));
      } else {
        box.replaceChildren(h('p', { class: 'form-error' }, e.message));
      }
      return;
    }
    const json = JSON.stringify(list);
    if (json === last) { refreshTimes(box); return; }
    last = json;
    box.replaceChildren(list.length ? table([
      ['Name', e => e.name + (e.name === edgeInfo.node ? ' (this edge)' : '')],
      ['Health', e => h('span', { class: 'badge ' + (e.health === 'ok' ? 'ok' : 'warn') }, e.health || 'unknown')],
      ['Region', e => e.region || '—'],
      ['Version', e => e.version || ''],
      ['Started', e => since(e.started)],
      ['Addresses', e => h('ul', {}, [['public', (e.public_addrs || []).join(', ')], ['http', e.http_addr], ['https', e.https_addr], ['tunnel', e.tunnel_addr], ['api', e.api_addr], ['peer', e.peer_addr]]
        .filter(([, a]) => a).map(([k, a]) => h('li', {}, k + ': ', code(a))))],
    ], list) : h('p', { class: 'muted' }, 'No edge has registered.'));
  }, 5000);
}

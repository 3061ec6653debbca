/**
 * The status page's inline script: polls /status once a second and renders it with
 * createElement/textContent only (server data never reaches an HTML parser).
 */
export const SCRIPT = String.raw`
'use strict';
(() => {
  const DASH = '\u2014';
  const $ = (id) => document.getElementById(id);
  const arr = (v) => (Array.isArray(v) ? v : []);
  const obj = (v) => (v && typeof v === 'object' && !Array.isArray(v) ? v : null);
  const str = (v) => {
    if (v === null || v === undefined || v === '') return DASH;
    if (typeof v === 'object') { try { return JSON.stringify(v); } catch (e) { return DASH; } }
    return String(v);
  };
  const parseTime = (v) => (typeof v === 'string' || typeof v === 'number' ? new Date(v).getTime() : NaN);
  const fmtTime = (v) => {
    const ms = parseTime(v);
    return isNaN(ms) ? str(v) : new Date(ms).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
  };
  const fmtListen = (v) => {
    const o = obj(v);
    if (o && o.port !== undefined) return (String(o.address).includes(':') ? '[' + o.address + ']' : str(o.address)) + ':' + o.port;
    return str(v);
  };
  const fmtUsd = (v) => (typeof v === 'number' && isFinite(v) ? '$' + v.toFixed(2) : DASH);
  const fmtDuration = (ms) => {
    const s = Math.floor(Math.abs(ms) / 1000);
    const pad = (n) => String(n).padStart(2, '0');
    if (s >= 86400) return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
    if (s >= 3600) return Math.floor(s / 3600) + 'h ' + pad(Math.floor((s % 3600) / 60)) + 'm';
    if (s >= 60) return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
    return s + 's';
  };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const node = (v, cls) => (v instanceof Node ? v : el('span', cls, str(v)));
  function dl(pairs) {
    const d = el('dl');
    for (const [label, value, cls] of pairs) {
      d.append(el('dt', '', label));
      const dd = el('dd', cls);
      dd.append(node(value));
      d.append(dd);
    }
    return d;
  }
  function table(heads, rows, empty) {
    if (!rows.length) return el('p', 'empty', empty);
    const t = el('table'), head = el('tr'), body = el('tbody');
    for (const h of heads) head.append(el('th', '', h));
    t.append(el('thead'), body);
    t.tHead.append(head);
    for (const row of rows) {
      const tr = el('tr');
      for (const [i, c] of row.cells.entries()) {
        const td = el('td', row.cls && row.cls[i]);
        td.append(node(c));
        tr.append(td);
      }
      if (row.key !== undefined) tr.dataset.key = String(row.key);
      body.append(tr);
    }
    return t;
  }

  // Countdowns tick locally every 250 ms against the server's clock (offset from server_time).
  let clockOffset = 0;
  const serverNow = () => Date.now() + clockOffset;
  const countdowns = new Map();
  let currentCountdowns = [];
  function countdown(at, kind, id) {
    const ms = parseTime(at);
    if (isNaN(ms)) return el('span', '', DASH);
    const span = el('span', 'countdown mono');
    if (id) span.id = id;
    currentCountdowns.push({ span, ms, kind });
    paint({ span, ms, kind });
    return span;
  }
  function paint(c) {
    const left = c.ms - serverNow();
    let text;
    if (left > 0) text = 'in ' + fmtDuration(left);
    else if (c.kind === 'expiry') text = 'expired ' + fmtDuration(left) + ' ago';
    else text = 'due (' + fmtDuration(left) + ' ago)';
    if (c.span.textContent !== text) c.span.textContent = text;
    c.span.classList.toggle('urgent', c.kind !== 'reset' && left < 10000);
  }
  setInterval(() => { for (const list of countdowns.values()) for (const c of list) paint(c); }, 250);

  // A section is rebuilt only when its data changed, so buttons and countdowns stay put.
  const lastData = new Map();
  function section(key, data, build) {
    const text = JSON.stringify(data === undefined ? null : data);
    if (lastData.get(key) === text) return;
    lastData.set(key, text);
    const box = $(key + '-body');
    currentCountdowns = [];
    try {
      const built = build(data);
      box.replaceChildren(...(Array.isArray(built) ? built : [built]));
    } catch (e) {
      box.replaceChildren(el('p', 'error', 'Could not render this section: ' + (e && e.message)));
    }
    countdowns.set(key, currentCountdowns);
  }

  // Destructive actions take two clicks: the first arms the action (by key, so a button rebuilt
  // by a poll in between stays armed) for 5 s.
  let armed = null;
  function disarm() {
    if (!armed) return;
    clearTimeout(armed.timer);
    armed = null;
    for (const b of document.querySelectorAll('button.armed')) { b.textContent = b.dataset.label; b.classList.remove('armed'); }
  }
  function showArmed(btn, confirmLabel) {
    btn.textContent = confirmLabel;
    btn.classList.add('armed');
  }
  function twoStep(btn, key, label, confirmLabel, act) {
    btn.type = 'button';
    btn.textContent = btn.dataset.label = label;
    if (armed && armed.key === key) showArmed(btn, confirmLabel);
    btn.addEventListener('click', () => {
      if (armed && armed.key === key) { disarm(); act(); return; }
      disarm();
      armed = { key, timer: setTimeout(disarm, 5000) };
      showArmed(btn, confirmLabel);
    });
    return btn;
  }

  const result = $('action-result');
  function showResult(cls, text) { result.className = cls; result.textContent = text; }
  const reason = () => $('reason').value.trim() || 'killed from the status page';
  async function mutate(path, body, what) {
    showResult('muted', what + ': sending…');
    const headers = { 'content-type': 'application/json' };
    const token = $('token').value.trim();
    if (token) headers.authorization = 'Bearer ' + token;
    try {
      const res = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body), cache: 'no-store', credentials: 'omit' });
      const text = await res.text();
      let msg = text.slice(0, 500);
      try { const j = JSON.parse(text); if (j && typeof j.error === 'string') msg = j.error; } catch (e) { /* not JSON: show the text */ }
      if (res.ok) showResult('ok', what + ': done');
      else {
        const retry = res.headers.get('retry-after');
        showResult('error', what + ' failed: HTTP ' + res.status + ': ' + msg + (retry ? ' (retry after ' + retry + ' s)' : ''));
      }
    } catch (e) {
      showResult('error', what + ' failed: ' + (e && e.message));
    }
    pollSoon();
  }
  const killButton = (id) => {
    const b = twoStep(el('button', 'danger'), 'kill:' + id, 'Kill', 'Confirm kill', () => mutate('/v1/kill', { spiffe_id: id, reason: reason() }, 'Kill ' + id));
    b.dataset.kill = id;
    return b;
  };
  twoStep($('kill-btn'), 'kill-typed', 'Kill', 'Confirm kill', () => {
    const id = $('kill-id').value.trim();
    if (!id) { showResult('error', 'Enter the SPIFFE ID to kill'); return; }
    mutate('/v1/kill', { spiffe_id: id, reason: reason() }, 'Kill ' + id);
  });
  twoStep($('killall-btn'), 'killall', 'Kill all', 'Confirm kill all', () => mutate('/v1/killall', { reason: reason() }, 'Kill all'));

  function renderIdentity(s) {
    const svid = obj(s.svid), src = obj(s.identity_source) || {};
    const own = el('span', 'mono', str(s.spiffe_id));
    own.id = 'own-id';
    const pairs = [['SPIFFE ID', own]];
    if (!svid) pairs.push(['SVID', el('span', 'urgent', 'none held (not ready)')]);
    else {
      let rotates = svid.rotates_at, est = '';
      const nb = parseTime(svid.not_before), na = parseTime(svid.not_after);
      if (rotates == null && !isNaN(nb) && !isNaN(na)) { rotates = nb + (na - nb) / 2; est = ' (estimate: half-life)'; }
      const rot = el('span');
      rot.append(countdown(rotates, 'rotation', 'rotates-in'), el('span', 'muted', est));
      pairs.push(['Expires', countdown(svid.not_after, 'expiry', 'expires-in')], ['Next rotation', rot],
        ['Serial', el('span', 'mono', str(svid.serial))], ['Generation', str(svid.generation)],
        ['Valid', fmtTime(svid.not_before) + ' \u2192 ' + fmtTime(svid.not_after)]);
    }
    pairs.push(['Source', str(src.kind)]);
    for (const [k, v] of Object.entries(src)) if (k !== 'kind') pairs.push([k, el('span', 'mono', str(v))]);
    return dl(pairs);
  }
  function renderTrust(s) {
    const out = [dl([['Trust domains', el('span', 'mono', arr(s.trust_domains).map(str).join(', ') || DASH)]])];
    for (const b of arr(s.bundles).map(obj).filter(Boolean)) {
      out.push(el('h3', 'mono', str(b.trust_domain)));
      out.push(table(['Authority', 'SHA-256', 'Not after'], arr(b.authorities).map(obj).filter(Boolean).map((a) => ({
        cells: [a.subject, a.sha256, fmtTime(a.not_after)], cls: ['mono', 'mono'] })), 'no authorities'));
    }
    return out;
  }
  function renderPolicy(p) {
    if (!obj(p)) return el('p', 'empty', 'no policy loaded');
    return dl([['Version', str(p.version)], ['File', el('span', 'mono', str(p.file))], ['Loaded', fmtTime(p.loaded_at)],
      ['Agents', el('span', 'mono', arr(p.agents).map(str).join(', ') || DASH)]]);
  }
  function renderRoutes(s) {
    const out = [];
    const o = obj(s.outbound);
    if (o) out.push(dl([['Proxy', el('span', 'mono', fmtListen(o.listen))], ['State', o.stopped ? el('span', 'urgent', 'stopped: ' + str(o.stopped_reason)) : 'running']]));
    out.push(table(['Route', 'Upstream', 'Server', 'Metering', 'Injects'], arr(s.routes).map(obj).filter(Boolean).map((r) => ({
      cells: [r.name, r.upstream,
        r.server_id != null ? 'id ' + str(r.server_id) : r.server_trust_domain != null ? 'domain ' + str(r.server_trust_domain) : r.tls != null ? 'tls ' + str(r.tls) : DASH,
        obj(r.metering) ? str(r.metering.provider) : DASH, arr(r.injects_headers).map(str).join(', ') || DASH],
      cls: ['mono', 'mono', 'mono'] })), 'no outbound routes'));
    return out;
  }
  function claimList(claims) {
    const c = obj(claims);
    if (!c || !Object.keys(c).length) return DASH;
    return dl(Object.entries(c).map(([k, v]) => [k, el('span', 'mono', str(v))]));
  }
  function renderInbound(i) {
    if (!obj(i)) return el('p', 'empty', 'no inbound listener');
    const peers = arr(i.peers).map(obj).filter(Boolean);
    return [dl([['Listener', el('span', 'mono', fmtListen(i.listen))], ['App', el('span', 'mono', str(i.app))], ['Action mappings', str(i.actions)]]),
      table(['Peer', 'SVID expires', 'Attestation', 'Claims', 'Verified', 'Session expires', ''], peers.map((p) => {
        const a = obj(p.attestation);
        return { key: str(p.spiffe_id), cells: [p.spiffe_id, countdown(p.not_after, 'expiry'), a ? str(a.type) : 'none', a ? claimList(a.claims) : DASH,
          a ? fmtTime(a.verified_at) : DASH, a ? countdown(a.session_expires_at, 'expiry') : DASH,
          typeof p.spiffe_id === 'string' ? killButton(p.spiffe_id) : DASH], cls: ['mono peer'] };
      }), 'no peers connected')];
  }
  function renderDenials(list) {
    const rows = arr(list).map(obj).filter(Boolean).slice(-200)
      .sort((a, b) => (parseTime(b.time) || 0) - (parseTime(a.time) || 0));
    return table(['Time', 'Direction', 'Peer / route', 'Method', 'Path', 'Action', 'Reason', 'Status', 'Detail'], rows.map((d) => ({
      cells: [fmtTime(d.time), d.direction, d.peer != null ? d.peer : d.route != null ? 'route ' + str(d.route) : DASH, d.method, d.path, d.action, d.reason, d.status, d.error],
      cls: ['', '', 'mono peer', 'mono', 'mono path', 'mono', 'mono reason urgent', 'status', 'detail'] })), 'no denials');
  }
  function renderBudgets(list) {
    return table(['Agent', 'Period', 'Spent', ''], arr(list).map(obj).filter(Boolean).map((b) => {
      const spent = b.spent_usd, limit = b.limit_usd;
      const ok = typeof spent === 'number' && typeof limit === 'number' && isFinite(spent) && isFinite(limit);
      const ratio = !ok ? NaN : limit > 0 ? spent / limit : spent >= limit ? 1 : 0;
      const bar = el('div', 'bar'), fill = el('div', 'fill' + (ratio >= 1 ? ' over' : ratio >= 0.8 ? ' warn' : ''));
      fill.style.width = (isNaN(ratio) ? 0 : Math.max(0, Math.min(1, ratio)) * 100) + '%';
      bar.append(fill);
      const period = el('span', '', str(b.period) + ' ' + str(b.period_id));
      if (b.resets_at != null) period.append(el('br'), el('span', 'muted', 'resets '), countdown(b.resets_at, 'reset'));
      return { key: str(b.agent), cells: [b.agent, period, fmtUsd(spent) + ' / ' + fmtUsd(limit) + (isNaN(ratio) ? '' : ' (' + Math.round(ratio * 100) + '%)'), bar],
        cls: ['mono', 'mono', 'spent'] };
    }), 'no budgets');
  }
  function restoreButton(body, what) {
    const key = body.all ? '*' : body.spiffe_id;
    const b = twoStep(el('button'), 'restore:' + key, 'Restore', 'Confirm restore', () => mutate('/v1/restore', body, what));
    b.dataset.restore = key;
    return b;
  }
  function renderRevocations(r) {
    const o = obj(r);
    if (!o) return el('p', 'empty', DASH);
    const out = [];
    const all = obj(o.all);
    if (all) {
      const p = el('p', 'urgent', 'ALL identities killed: ' + str(all.reason) + ' (' + fmtTime(all.at) + ' by ' + str(all.by) + ') ');
      p.id = 'killed-all';
      p.append(restoreButton({ all: true }, 'Restore all'));
      out.push(p);
    }
    out.push(table(['SPIFFE ID', 'Reason', 'At', 'By', ''], arr(o.entries).map(obj).filter(Boolean).map((e) => ({
      key: str(e.spiffe_id),
      cells: [e.spiffe_id, e.reason, fmtTime(e.at), e.by,
        e.source === 'shared' ? el('span', 'muted', 'shared list') : typeof e.spiffe_id === 'string' ? restoreButton({ spiffe_id: e.spiffe_id }, 'Restore ' + e.spiffe_id) : DASH],
      cls: ['mono', 'reason', '', 'mono'] })), 'no identities revoked'));
    return out;
  }

  function render(s) {
    $('name').textContent = s.name == null ? '' : str(s.name);
    const o = obj(s.outbound), all = obj(obj(s.revocations) && s.revocations.all);
    const stopped = all ? 'Kill switch engaged: ' + str(all.reason) : o && o.stopped ? 'Outbound stopped: ' + str(o.stopped_reason) : '';
    $('stopped').textContent = stopped;
    $('stopped').hidden = !stopped;
    // seconds_to_expiry changes every poll; the countdown already shows it.
    section('identity', { id: s.spiffe_id, svid: obj(s.svid) ? Object.assign({}, s.svid, { seconds_to_expiry: 0 }) : s.svid, src: s.identity_source }, () => renderIdentity(s));
    section('trust', { t: s.trust_domains, b: s.bundles }, () => renderTrust(s));
    section('policy', s.policy, renderPolicy);
    section('routes', { r: s.routes, o: s.outbound }, () => renderRoutes(s));
    section('inbound', s.inbound, renderInbound);
    section('denials', s.recent_denials, renderDenials);
    section('budgets', s.budgets, renderBudgets);
    section('revocations', s.revocations, renderRevocations);
    const skew = Math.round(clockOffset / 1000);
    $('updated').textContent = 'updated ' + fmtTime(new Date(serverNow()).toISOString()) + (Math.abs(skew) >= 2 ? ' (clock skew ' + skew + ' s corrected)' : '');
  }

  // Poll /status once a second; on failure show the banner and keep trying.
  let pollTimer = 0, inFlight = false, again = false;
  async function poll() {
    inFlight = true;
    const ctl = new AbortController();
    const timeout = setTimeout(() => ctl.abort(), 5000);
    try {
      const res = await fetch('/status', { cache: 'no-store', credentials: 'omit', signal: ctl.signal, headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const s = obj(await res.json());
      if (!s) throw new Error('status is not a JSON object');
      const t = parseTime(s.server_time);
      if (!isNaN(t)) clockOffset = t - Date.now();
      $('offline').hidden = true;
      render(s);
    } catch (e) {
      $('offline-detail').textContent = e && e.name === 'AbortError' ? 'timed out' : String(e && e.message);
      $('offline').hidden = false;
    } finally {
      clearTimeout(timeout);
      inFlight = false;
      pollTimer = setTimeout(poll, again ? 0 : 1000);
      again = false;
    }
  }
  function pollSoon() {
    if (inFlight) { again = true; return; }
    clearTimeout(pollTimer);
    poll();
  }
  poll();
})();
`;

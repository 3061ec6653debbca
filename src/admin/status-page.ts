/**
 * The operator status page served at GET / on the admin port: one self-contained HTML document
 * (inline CSS, one inline script, no external assets, works offline). The script polls
 * /status once a second and renders it with createElement/textContent only: SPIFFE IDs, paths
 * and reasons are attacker-influenced, so server data never reaches an HTML parser. The CSP
 * allows exactly this script and style by hash, so even an injection could not run.
 */
import { createHash } from 'node:crypto';
import { SCRIPT } from './status-page-script.js';

const STYLE = String.raw`
:root{--fg:#1b1f24;--muted:#59636e;--bg:#f5f6f8;--card:#fff;--line:#d8dde3;--red:#c62828;--amber:#b26a00;--green:#2e7d32;--blue:#1f5fbf}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:1rem;align-items:baseline;justify-content:space-between;padding:.8rem 1.2rem;background:var(--card);border-bottom:1px solid var(--line)}
h1{font-size:1.15rem;margin:0}h2{font-size:1rem;margin:0 0 .6rem}h3{font-size:.9rem;margin:.6rem 0 .3rem}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(28rem,1fr));gap:1rem;padding:1rem 1.2rem}
section{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.8rem 1rem;min-width:0}
section.wide{grid-column:1/-1}
.mono,code,input.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.86em;overflow-wrap:anywhere}
.muted,#updated{color:var(--muted)}.empty{color:var(--muted);font-style:italic}
.banner{padding:.6rem 1.2rem;font-weight:600;color:#fff;background:var(--red)}
.urgent{color:var(--red);font-weight:600}.error{color:var(--red)}.ok{color:var(--green)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0}dt{color:var(--muted)}dd{margin:0;min-width:0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;border-bottom:1px solid var(--line)}
th{font-weight:600;color:var(--muted);font-size:.85em}td{overflow-wrap:anywhere}
.bar{height:.8rem;background:#e6e9ed;border-radius:3px;overflow:hidden;min-width:8rem}
.fill{height:100%;background:var(--green)}.fill.warn{background:var(--amber)}.fill.over{background:var(--red)}
button{font:inherit;white-space:nowrap;padding:.25rem .7rem;border:1px solid var(--line);border-radius:4px;background:#fff;cursor:pointer}
button.danger{border-color:var(--red);color:var(--red)}button.armed{background:var(--red);color:#fff}
input{font:inherit;padding:.25rem .4rem;border:1px solid var(--line);border-radius:4px;min-width:0}
.controls{display:grid;grid-template-columns:max-content 1fr max-content;gap:.5rem .8rem;align-items:center}
#action-result{margin-top:.6rem;min-height:1.4em;overflow-wrap:anywhere}
`;

const BODY = String.raw`
<header><h1>attest-sidecar <span id="name" class="mono"></span></h1><span id="updated">connecting…</span></header>
<div id="offline" class="banner" role="alert" hidden>Connection to the sidecar lost — retrying. <span id="offline-detail"></span></div>
<div id="stopped" class="banner" role="alert" hidden></div>
<main>
<section id="identity"><h2>Identity</h2><div id="identity-body"></div></section>
<section id="trust"><h2>Trust bundles</h2><div id="trust-body"></div></section>
<section id="policy"><h2>Policy</h2><div id="policy-body"></div></section>
<section id="routes"><h2>Outbound routes</h2><div id="routes-body"></div></section>
<section id="inbound" class="wide"><h2>Inbound peers</h2><div id="inbound-body"></div></section>
<section id="denials" class="wide"><h2>Recent denials</h2><div id="denials-body"></div></section>
<section id="budgets"><h2>Budgets</h2><div id="budgets-body"></div></section>
<section id="revocations"><h2>Revocations</h2><div id="revocations-body"></div></section>
<section id="kill" class="wide"><h2>Kill switch</h2>
<div class="controls">
<label for="token">Admin token</label><input id="token" type="password" class="mono" autocomplete="off" spellcheck="false"><span class="muted">kept in this tab only</span>
<label for="reason">Reason</label><input id="reason" type="text" placeholder="why (recorded in the audit log)"><span></span>
<label for="kill-id">SPIFFE ID</label><input id="kill-id" type="text" class="mono" placeholder="spiffe://trust-domain/path" spellcheck="false"><button id="kill-btn" class="danger" type="button">Kill</button>
<span></span><span class="muted">Stops every identity at once (inbound and outbound).</span><button id="killall-btn" class="danger" type="button">Kill all</button>
</div>
<div id="action-result" role="status"></div>
</section>
</main>
`;

const cspHash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>attest-sidecar status</title><link rel="icon" href="data:,">
<style>${STYLE}</style></head>
<body>${BODY}<script>${SCRIPT}</script></body></html>
`;

/** Allows exactly the inline script and style above (by hash); fetches to this origin only. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${cspHash(SCRIPT)}`,
  `style-src ${cspHash(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

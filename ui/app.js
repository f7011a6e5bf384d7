// The runs page. Plain ES module, no build step. Every string from the server (agent names, tool
// arguments, reasons, model output) is untrusted: it is only ever set with textContent — never
// innerHTML — and the server's CSP allows no inline script. The token lives in sessionStorage and goes
// out only as an Authorization header (never in a URL); live updates come over fetch() streaming of an
// SSE response, because EventSource cannot send headers.
const TOKEN_KEY = 'delegate-mcp-token';
const STATUSES = new Set(['running', 'ok', 'error', 'failed', 'cancelled', 'timeout', 'max_turns', 'budget_exhausted', 'denied']);
const $ = (id) => document.getElementById(id);

const state = { selected: null, streamAbort: null, refreshTimer: null };

/** Builds an element; children are nodes or strings (strings become text nodes). */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'className') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'onclick') node.addEventListener('click', v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const token = () => sessionStorage.getItem(TOKEN_KEY);
const headers = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

class Unauthorized extends Error {}

async function api(pathAndQuery) {
  const res = await fetch(pathAndQuery, { headers: headers(), cache: 'no-store' });
  if (res.status === 401) throw new Unauthorized('the server did not accept the token');
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

// ---------------------------------------------------------------------------------------------------
// Formatting

const fmtMs = (ms) => (ms == null ? '–' : ms < 1000 ? `${Math.round(ms)} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60000)} m ${Math.floor((ms % 60000) / 1000)} s`);
const fmtCost = (usd, status) => (usd == null ? (status === 'running' ? '–' : '$?') : `$${usd.toFixed(4)}`);
const fmtTokens = (n) => (n == null ? '?' : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n));
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : '–');
const statusBadge = (s) => el('span', { className: `status status-${STATUSES.has(s) ? s : 'unknown'}`, text: s });

function describe(e) {
  switch (e.kind) {
    case 'run_start':
      return `run ${e.run_id} started (${e.model}${e.caller ? `, caller ${e.caller}` : ''})`;
    case 'run_end':
      return `${e.status} · ${fmtMs(e.duration_ms)} · ${fmtTokens(e.tokens)} tokens · ${fmtCost(e.cost_usd, e.status)}${e.error ? ` · ${e.error}` : ''}`;
    case 'model_call':
      return `turn ${e.turn} · ${fmtTokens(e.input_tokens)} in / ${fmtTokens(e.output_tokens)} out · ${fmtMs(e.latency_ms)} · ${e.stop_reason ?? '–'}${e.retries ? ` · ${e.retries} retries` : ''}${e.error ? ` · ${e.error}` : ''}`;
    case 'tool_call':
      return `${e.tool} · ${e.decision}${e.rule ? ` (rule ${e.rule})` : ''}${e.reason ? ` · ${e.reason}` : ''} · ${e.outcome} · ${fmtMs(e.duration_ms)}`;
    case 'delegation':
      return `to ${e.child_agent} (${e.child_run_id}, ${e.hop})`;
    case 'budget_refused':
      return `${e.scope}${e.message ? `: ${e.message}` : ''}`;
    default:
      return e.message ?? '';
  }
}
const KIND_LABEL = { run_start: 'start', run_end: 'end', model_call: 'model call', tool_call: 'tool call', delegation: 'delegation', budget_refused: 'budget refused', cancelled: 'cancelled', error: 'error' };

// ---------------------------------------------------------------------------------------------------
// Run list

function filterQuery() {
  const q = new URLSearchParams();
  for (const [key, id] of [['agent', 'f-agent'], ['status', 'f-status'], ['day', 'f-day']]) if ($(id).value) q.set(key, $(id).value);
  return q.toString();
}

async function loadRuns() {
  const data = await api(`/ui/api/runs?${filterQuery()}`);
  const agentSel = $('f-agent');
  const current = agentSel.value;
  agentSel.replaceChildren(el('option', { value: '', text: 'all' }), ...data.agents.map((a) => el('option', { value: a, text: a })));
  agentSel.value = data.agents.includes(current) ? current : '';
  const rows = data.runs.map((r) =>
    el(
      'tr',
      { 'data-run-id': r.run_id, className: r.run_id === state.selected ? 'selected' : '', onclick: () => selectRun(r.run_id) },
      el('td', { text: fmtTime(r.started_at) }),
      el('td', { text: r.agent ?? '?' }),
      el('td', {}, statusBadge(r.status), ...(data.live?.[r.run_id] ? [el('div', { className: 'progress', text: `turn ${data.live[r.run_id].turn} · ${data.live[r.run_id].progress}` })] : [])),
      el('td', { text: r.caller ?? '–' }),
      el('td', { className: 'num', text: r.depth ?? '?' }),
      el('td', { className: 'num', text: fmtMs(r.duration_ms) }),
      el('td', { className: 'num', text: fmtTokens(r.tokens) }),
      el('td', { className: 'num', text: fmtCost(r.cost_usd, r.status) }),
      el('td', { className: 'num', text: r.denials ? String(r.denials) : '' }),
      el('td', { className: 'id', text: r.run_id }),
    ),
  );
  $('runs').tBodies[0].replaceChildren(...rows);
  $('runs-empty').hidden = rows.length > 0;
}

// ---------------------------------------------------------------------------------------------------
// One run: tree, denials, timeline, output

function treeNode(n) {
  const li = el(
    'li',
    { 'data-run-id': n.run_id },
    el('strong', { text: n.agent ?? '?' }),
    ' ',
    statusBadge(n.status),
    ` · ${fmtTokens(n.usage.input_tokens + n.usage.output_tokens + n.usage.cache_read_input_tokens + n.usage.cache_creation_input_tokens)} tokens · ${fmtCost(n.cost_usd, n.status)} · ${fmtMs(n.duration_ms)}${n.denials ? ` · ${n.denials} denied` : ''} `,
    el('span', { className: 'id', text: n.run_id }),
  );
  if (n.children.length) li.append(el('ul', {}, ...n.children.map(treeNode)));
  return li;
}

async function loadRun(id) {
  const d = await api(`/ui/api/run?id=${encodeURIComponent(id)}`);
  $('detail').hidden = false;
  $('detail-title').textContent = `${d.tree.agent ?? '?'} · ${d.tree.run_id}`;
  $('detail-error').textContent = d.tree.error ?? '';
  $('tree').replaceChildren(treeNode(d.tree));
  $('denials').replaceChildren(
    ...(d.denials.length
      ? d.denials.map((e) =>
          e.kind === 'tool_call'
            ? el('li', { className: 'denial' }, el('strong', { text: e.agent ?? '?' }), ` denied ${e.tool} · rule `, el('span', { className: 'rule', text: e.rule ?? '(none)' }), ` · ${e.reason ?? ''}`)
            : el('li', { className: 'denial' }, el('strong', { text: e.agent ?? '?' }), ` budget refused (${e.scope}) · ${e.message ?? ''}`),
        )
      : [el('li', { className: 'muted', text: 'none' })]),
  );
  const t0 = d.timeline.length ? Date.parse(d.timeline[0].ts) : 0;
  $('timeline').tBodies[0].replaceChildren(
    ...d.timeline.map((e) =>
      el(
        'tr',
        { 'data-kind': e.kind },
        el('td', { className: 'num', text: `+${((Date.parse(e.ts) - t0) / 1000).toFixed(3)} s` }),
        el('td', { text: `${'· '.repeat(e.depth ?? 0)}${e.agent ?? '?'}` }),
        el('td', { text: KIND_LABEL[e.kind] ?? e.kind }),
        el('td', { text: describe(e) }),
      ),
    ),
  );
  const out = d.previews[d.tree.run_id]?.output;
  $('output').textContent = out ?? (d.tree.status === 'running' ? '(running)' : '(no output preview: the audit log keeps answers only with delegate.audit.previews: true)');
}

async function selectRun(id) {
  state.selected = id;
  for (const tr of $('runs').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.runId === id);
  await guarded(() => loadRun(id));
}

// ---------------------------------------------------------------------------------------------------
// Live updates: SSE over fetch() so the Authorization header goes along.

function setLive(on) {
  $('live').textContent = on ? 'live' : 'offline';
  $('live').className = `live ${on ? 'on' : 'off'}`;
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => void refresh(), 100);
}

async function refresh() {
  await guarded(async () => {
    await loadRuns();
    if (state.selected) await loadRun(state.selected);
  });
}

async function followStream() {
  state.streamAbort?.abort();
  const abort = new AbortController();
  state.streamAbort = abort;
  while (!abort.signal.aborted) {
    try {
      const res = await fetch('/ui/api/stream', { headers: headers(), cache: 'no-store', signal: abort.signal });
      if (res.status === 401) return showLogin('the server did not accept the token');
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setLive(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const event = /^event: ?(.*)$/m.exec(block)?.[1];
          if (event === 'change' || event === 'hello') scheduleRefresh();
        }
      }
    } catch (err) {
      if (abort.signal.aborted) return;
    }
    setLive(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---------------------------------------------------------------------------------------------------
// Token

async function guarded(fn) {
  try {
    await fn();
  } catch (err) {
    if (err instanceof Unauthorized) showLogin(err.message);
    else $('detail-error').textContent = String(err.message ?? err);
  }
}

function showLogin(message = '') {
  state.streamAbort?.abort();
  setLive(false);
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('token').focus();
}

async function open() {
  try {
    await loadRuns();
  } catch (err) {
    if (err instanceof Unauthorized) return showLogin(token() ? err.message : '');
    throw err;
  }
  $('login').hidden = true;
  $('app').hidden = false;
  void followStream();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
  $('token').value = '';
  void open();
});
$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin('');
});
for (const id of ['f-agent', 'f-status', 'f-day']) $(id).addEventListener('change', () => void refresh());
$('f-clear').addEventListener('click', () => {
  for (const id of ['f-agent', 'f-status', 'f-day']) $(id).value = '';
  void refresh();
});

void open();

// Reference client of the racer-profiles API: what a racing dashboard needs,
// written to be copied. Every call is a plain fetch() with the bearer token;
// commands send If-Match (the ETag they were based on) and an Idempotency-Key
// (one per user action, reused when that action is retried).

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'racer-profiles-token';

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  profiles: new Map(), // id -> profile as the API returns it, plus _floor (see upsert)
  activeId: null,
  rosterEtag: null, // ETag of GET /v1/profiles/default: If-Match of PUT /v1/profiles/default
  stream: null, // AbortController of the live stream
};

// --- HTTP -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, { body, ifMatch, key, minPosition } = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (ifMatch) headers['If-Match'] = ifMatch;
  if (key) headers['Idempotency-Key'] = key;
  if (minPosition) headers['X-Min-Position'] = String(minPosition);
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) throw new ApiError(response.status, data || {});
  const position = Number(response.headers.get('X-Position')) || 0;
  return { data, status: response.status, etag: response.headers.get('ETag'), position };
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16)); // plain-HTTP pages lack randomUUID
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const pause = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// One user action: one Idempotency-Key, sent again on every retry of it, so a
// retry after a lost answer never applies the change twice.
async function command(method, path, options = {}) {
  const key = newKey();
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await api(method, path, { ...options, key });
    } catch (e) {
      const inFlight = e.status === 409 && String(e.problem.type).endsWith('/idempotency-in-flight');
      const retry = !(e instanceof ApiError) || e.status === 503 || inFlight;
      if (!retry || attempt === 3) throw e;
      await pause(300 * attempt);
    }
  }
}

// --- state --------------------------------------------------------------------

// Each state carries a floor: a position it is known to be at least as new as
// (a stream event's position, a command's X-Position, a list's X-Min-Position).
// An older answer never overwrites a newer one; the stream brings the rest.
function upsert(profile, floor) {
  const current = state.profiles.get(profile.id);
  if (!current || floor >= current._floor) state.profiles.set(profile.id, { ...profile, _floor: floor });
}

const sorted = () => [...state.profiles.values()]
  .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
const activeProfiles = () => sorted().filter((p) => !p.archived);
const defaultProfile = () => activeProfiles().find((p) => p.is_default);
const active = () => state.profiles.get(state.activeId);

async function loadProfiles(minPosition = 0) {
  let cursor = null;
  do {
    const query = new URLSearchParams({ include_archived: 'true', limit: '200' });
    if (cursor) query.set('cursor', cursor);
    const { data } = await api('GET', `/v1/profiles?${query}`, { minPosition });
    data.items.forEach((p) => upsert(p, minPosition));
    cursor = data.next_cursor;
  } while (cursor);
  await loadRosterEtag();
}

async function loadRosterEtag() {
  try {
    state.rosterEtag = (await api('GET', '/v1/profiles/default')).etag;
  } catch (e) {
    if (e.status !== 404) throw e;
    state.rosterEtag = null; // no active profile: nothing to set as default
  }
}

// --- unsaved client state (per profile, cleared when switching) --------------

const draftFields = () => ['notes', 'rename', 'vehicle-name', 'vehicle-class', 'race-number'].map($);
const hasUnsavedState = () => draftFields().some((field) => field.value.trim() !== '');
const clearClientState = () => draftFields().forEach((field) => { field.value = ''; });

function confirmSwitch(text) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
  });
}

async function switchTo(id) {
  const from = active();
  const to = state.profiles.get(id);
  if (!to || id === state.activeId) return;
  if (from && hasUnsavedState()) {
    const ok = await confirmSwitch(`Switching to ${to.name} clears your unsaved changes for ${from.name}.`);
    if (!ok) return; // everything stays as it was
  }
  activate(id);
}

function activate(id) {
  clearClientState();
  state.activeId = id;
  render();
  loadHistory();
}

// When the active profile is archived, the new default becomes active. The
// stream may show the archive before the hand-over of the default: wait for it.
function ensureActive() {
  const current = active();
  if (current && !current.archived) return;
  const next = defaultProfile() || (current ? null : activeProfiles()[0]);
  if (!next && current && activeProfiles().length) return;
  if (next) activate(next.id); else { state.activeId = null; render(); }
}

// --- rendering ------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  Object.entries(attrs).forEach(([k, v]) => {
    if (k === 'onclick') node.addEventListener('click', v);
    else if (v !== false && v != null) node.setAttribute(k, v === true ? '' : v);
  });
  node.append(...children);
  return node;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

function render() {
  const focusedId = document.activeElement?.closest?.('#profile-list')
    ? document.activeElement.dataset.id : null;
  $('profile-list').replaceChildren(...activeProfiles().map((p) => el('li', {},
    el('button', {
      type: 'button', class: 'profile', 'data-id': p.id, 'data-default': p.is_default ? 'true' : 'false',
      'aria-current': p.id === state.activeId ? 'true' : false, tabindex: p.id === state.activeId ? '0' : '-1',
      onclick: () => switchTo(p.id),
    }, el('span', { class: 'name' }, p.name), el('span', { class: 'meta' }, plural(p.vehicle_count, 'vehicle')),
    p.is_default ? el('span', { class: 'badge' }, 'Default') : ''))));
  if (focusedId) document.querySelector(`#profile-list [data-id="${focusedId}"]`)?.focus();

  const archived = sorted().filter((p) => p.archived);
  $('archived-count').textContent = String(archived.length);
  $('archived-list').replaceChildren(...archived.map((p) => el('li', {}, el('span', {}, p.name),
    el('button', { type: 'button', 'aria-label': `Restore ${p.name}`, onclick: () => restore(p) }, 'Restore'))));
  renderDetail();
}

function renderDetail() {
  const p = active();
  $('detail').hidden = !p;
  if (!p) return;
  $('profile-title').textContent = p.name;
  $('default-badge').hidden = !p.is_default;
  $('set-default').hidden = p.is_default;
  $('rename').placeholder = p.name;
  $('vehicle-list').replaceChildren(...(p.vehicles.length ? p.vehicles.map((v) => el('li', {},
    el('span', {}, [v.name, v.vehicle_class, v.race_number && `#${v.race_number}`].filter(Boolean).join(' · ')),
    el('button', { type: 'button', 'aria-label': `Remove ${v.name}`, onclick: () => removeVehicle(p, v) }, 'Remove')))
    : [el('li', { class: 'hint' }, 'No vehicles yet.')]));
  const others = activeProfiles().filter((o) => o.id !== p.id);
  const select = $('successor');
  const chosen = select.value;
  select.replaceChildren(...others.map((o) => el('option', { value: o.id }, o.name)));
  if (others.some((o) => o.id === chosen)) select.value = chosen;
  $('successor-field').hidden = !(p.is_default && others.length);
}

function describe(entry) {
  const d = entry.data || {};
  const what = entry.concerns ? entry.concerns[0].toUpperCase() + entry.concerns.slice(1) : ({
    Created: `Created as “${d.name}”`,
    Renamed: `Renamed to “${d.name}”`,
    VehicleAdded: `Added vehicle “${d.vehicle?.name}”`,
    VehicleChanged: 'Changed a vehicle',
    VehicleRemoved: 'Removed a vehicle',
    Archived: 'Archived',
    Restored: 'Restored',
  }[entry.type] || entry.type);
  return entry.reason ? `${what} (${entry.reason})` : what;
}

async function loadHistory() {
  const p = active();
  if (!p) { $('history').replaceChildren(); return; }
  try {
    const { data } = await api('GET', `/v1/profiles/${p.id}/history?limit=200`);
    if (state.activeId !== p.id) return;
    $('history').replaceChildren(...data.items.slice().reverse().map((e) => el('li', {},
      el('time', { datetime: e.recorded_at }, new Date(e.recorded_at).toLocaleString()),
      el('span', { class: 'what' }, describe(e)),
      el('span', { class: 'who' }, `by ${e.actor || 'unknown'}`))));
  } catch (e) { showError(e); }
}

// --- alerts -------------------------------------------------------------------

// The role="alert" region: a refused action's problem detail, never swallowed.
function showAlert(text) {
  $('alert').textContent = text;
  $('alert').hidden = !text;
}
const clearAlert = () => showAlert('');

function showError(e) {
  if (e instanceof ApiError && e.status === 401) { signOut(`The token was refused: ${e.message}`); return; }
  showAlert(e instanceof ApiError ? `${e.problem.title || 'Refused'}: ${e.message}` : `Network error: ${e.message}`);
}

// --- actions: each one command, then the read model at its position ---------

async function run(form, action) {
  clearAlert();
  const buttons = form ? [...form.querySelectorAll('button')] : [];
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const result = await action();
    if (result?.status !== 202 && result?.data?.id) upsert(result.data, result.position);
    await loadProfiles(result?.position);
    ensureActive();
    render();
    loadHistory();
    return result;
  } catch (e) {
    showError(e);
    return null;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

const etag = (p) => `"${p.version}"`;
const path = (p, rest = '') => `/v1/profiles/${p.id}${rest}`;

function restore(p) {
  return run(null, () => command('POST', path(p, '/restore'), { ifMatch: etag(p) }));
}

function removeVehicle(p, v) {
  return run(null, () => command('DELETE', path(p, `/vehicles/${v.id}`), { ifMatch: etag(p) }));
}

function on(id, handler) {
  $(id).addEventListener('submit', async (event) => {
    event.preventDefault();
    await handler(event.target);
  });
}

function wireActions() {
  $('set-default').addEventListener('click', () => run(null, () => command('PUT', '/v1/profiles/default', {
    body: { profile_id: state.activeId }, ifMatch: state.rosterEtag,
  })));
  on('create-form', async (form) => {
    const result = await run(form, () => command('POST', '/v1/profiles', { body: { name: $('new-name').value } }));
    if (result) $('new-name').value = '';
  });
  on('rename-form', async (form) => {
    const p = active();
    const result = await run(form, () => command('PATCH', path(p), { body: { name: $('rename').value }, ifMatch: etag(p) }));
    if (result) $('rename').value = '';
  });
  on('vehicle-form', async (form) => {
    const p = active();
    const body = { name: $('vehicle-name').value };
    if ($('vehicle-class').value.trim()) body.vehicle_class = $('vehicle-class').value;
    if ($('race-number').value.trim()) body.race_number = $('race-number').value;
    const result = await run(form, () => command('POST', path(p, '/vehicles'), { body, ifMatch: etag(p) }));
    if (result) ['vehicle-name', 'vehicle-class', 'race-number'].forEach((id) => { $(id).value = ''; });
  });
  on('archive-form', (form) => {
    const p = active();
    const body = p.is_default && !$('successor-field').hidden ? { successor_id: $('successor').value } : {};
    return run(form, () => command('POST', path(p, '/archive'), { body, ifMatch: etag(p) }));
  });
}

// --- keyboard: the sidebar is one tab stop; arrows, Home and End move in it ---

function onListKey(event) {
  const buttons = [...$('profile-list').querySelectorAll('button')];
  const at = buttons.indexOf(document.activeElement);
  const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: buttons.length - 1 }[event.key];
  if (at < 0 || to === undefined) return;
  event.preventDefault();
  const target = buttons[Math.max(0, Math.min(buttons.length - 1, to))];
  buttons.forEach((b) => { b.tabIndex = b === target ? 0 : -1; });
  target.focus();
}

// --- live updates: GET /v1/profiles/stream (Server-Sent Events) ----------------
// Read with fetch() so the token goes in the Authorization header, not the URL;
// EventSource clients pass ?access_token= instead. On reconnect, Last-Event-ID
// (the last position seen) makes the server send everything changed since.

function onStreamEvent(event) {
  if (event.event !== 'profile' || !event.data) return;
  const profile = JSON.parse(event.data);
  upsert(profile, profile.position);
  if (profile.id === state.activeId) scheduleHistory();
}

let historyTimer = null;
function scheduleHistory() {
  clearTimeout(historyTimer);
  historyTimer = setTimeout(loadHistory, 200);
}

function parseEvent(block) {
  const event = { event: 'message', data: '' };
  block.split('\n').forEach((line) => {
    if (!line || line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') event.data += (event.data ? '\n' : '') + value;
    else if (field === 'event' || field === 'id') event[field] = value;
  });
  return event;
}

async function follow() {
  const abort = new AbortController();
  state.stream = abort;
  let lastId = null;
  let wait = 1000;
  while (!abort.signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: 'text/event-stream' };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const response = await fetch('/v1/profiles/stream', { headers, signal: abort.signal });
      if (response.status === 401) { showError(new ApiError(401, await response.json())); return; }
      if (!response.ok) throw new Error(`stream answered ${response.status}`);
      $('live').textContent = 'Live';
      wait = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const blocks = buffer.split('\n\n');
        buffer = blocks.pop();
        const events = blocks.map(parseEvent);
        events.forEach((e) => { if (e.id !== undefined) lastId = e.id; onStreamEvent(e); });
        if (events.some((e) => e.event === 'profile')) {
          ensureActive();
          render();
          loadRosterEtag().catch(() => {}); // the roster moved on: keep If-Match current
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
    }
    $('live').textContent = 'Reconnecting…';
    await pause(wait);
    wait = Math.min(wait * 2, 10000);
  }
}

// --- sign in and start ------------------------------------------------------------

function signOut(message) {
  state.stream?.abort();
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { token: null, profiles: new Map(), activeId: null, rosterEtag: null, stream: null });
  clearClientState();
  $('app').hidden = true;
  $('sign-out').hidden = true;
  $('token-form').hidden = false;
  $('live').textContent = 'Offline';
  if (message) showAlert(message); else clearAlert();
  $('token').focus();
}

async function start() {
  $('token-form').hidden = true;
  try {
    await loadProfiles();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { signOut(`The token was refused: ${e.message}`); return; }
    showError(e);
  }
  $('app').hidden = false;
  $('sign-out').hidden = false;
  const first = defaultProfile() || activeProfiles()[0];
  state.activeId = first ? first.id : null; // the default auto-loads on start-up
  render();
  loadHistory();
  follow();
}

function init() {
  wireActions();
  $('profile-list').addEventListener('keydown', onListKey);
  $('sign-out').addEventListener('click', () => signOut());
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.token = $('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $('token').value = '';
    clearAlert();
    start();
  });
  if (state.token) start(); else signOut();
}

init();

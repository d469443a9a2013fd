// The dashboard: sign in with a token (kept in sessionStorage, sent only to this origin, only
// in the Authorization header), pick a bucket and an event, see its histogram and newest
// events, follow the live tail. Plain modules, no build step, no third-party code.
import { drawHistogram, bumpLast } from './histogram.js'

const $ = (id) => document.getElementById(id)
const PAGE = 20
let cursor = null
let live = null // AbortController of the live stream

function token () { return sessionStorage.getItem('eventsapi.token') }

function showError (text) { $('error').textContent = text; $('error').hidden = !text }

function signOut () {
  sessionStorage.removeItem('eventsapi.token')
  stopLive()
  $('board').hidden = true; $('signin').hidden = false; $('signout').hidden = true
}

async function api (path, body, method) {
  const headers = { Authorization: `Bearer ${token()}` }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const resp = await fetch(path, { method: method || (body === undefined ? 'GET' : 'POST'), headers, body: body === undefined ? undefined : JSON.stringify(body) })
  if (resp.status === 401) { signOut(); throw new Error('the token was refused: sign in again') }
  if (!resp.ok) {
    let detail = `${resp.status} ${resp.statusText}`
    try { detail = (await resp.json()).detail || detail } catch (e) { /* not problem+json */ }
    throw new Error(detail)
  }
  return resp
}

const bucket = () => $('bucket').value
const base = () => `/api/bucket/${encodeURIComponent(bucket())}/data`
const tz = () => $('tz').value || Intl.DateTimeFormat().resolvedOptions().timeZone

function formatTime (ms) {
  return new Intl.DateTimeFormat(undefined, { timeZone: tz(), dateStyle: 'short', timeStyle: 'medium' }).format(new Date(ms))
}

function filters () {
  const f = { event_name: $('event').value }
  if ($('app').value) f.app_name = $('app').value
  if ($('server').value) f.server_name = $('server').value
  return f
}

function row (e, fresh) {
  const tr = document.createElement('tr')
  tr.dataset.eventId = e.id
  if (fresh) tr.className = 'new'
  const json = JSON.stringify(e.data)
  const cells = [formatTime(e.at), e.app_name, e.server_name]
  for (const text of cells) { const td = document.createElement('td'); td.textContent = text; tr.appendChild(td) }
  const td = document.createElement('td')
  const details = document.createElement('details')
  const summary = document.createElement('summary')
  summary.textContent = json.length > 80 ? json.slice(0, 77) + '...' : json
  const pre = document.createElement('pre')
  pre.textContent = JSON.stringify(e.data, null, 2)
  details.append(summary, pre); td.appendChild(details); tr.appendChild(td)
  return tr
}

async function loadBuckets () {
  const buckets = await (await api('/api/bucket')).json()
  $('bucket').replaceChildren(...buckets.map((b) => new Option(b.name, b._id)))
  await loadKeys()
}

async function loadKeys () {
  if (!bucket()) return
  const keys = await (await api(`${base()}/eventsKeysByApp`)).json()
  const names = [...new Set(keys.flatMap((k) => k.events))].sort()
  const current = $('event').value
  $('event').replaceChildren(...names.map((n) => new Option(n, n)))
  if (names.includes(current)) $('event').value = current
  $('app').replaceChildren(new Option('all apps', ''), ...keys.map((k) => new Option(k.app_name, k.app_name)))
  await refresh()
}

async function refresh () {
  showError('')
  if (!$('event').value) { $('rows').replaceChildren(); $('histogram').replaceChildren(); return }
  const stats = await (await api(`${base()}/events/stats`, { ...filters(), interval: $('interval').value, days: Number($('days').value) || 2, tz: tz() })).json()
  drawHistogram($('histogram'), stats, formatTime)
  cursor = null
  $('rows').replaceChildren()
  await loadMore()
  if ($('live').checked) startLive()
}

async function loadMore () {
  const body = { ...filters(), limit: PAGE }
  if (cursor) body.cursor = cursor
  const resp = await api(`${base()}/events`, body)
  const events = await resp.json()
  for (const e of events) $('rows').appendChild(row(e, false))
  cursor = resp.headers.get('X-Next-Cursor')
  $('more').hidden = !cursor
}

function stopLive () { if (live) { live.abort(); live = null } }

// Server-Sent Events read with fetch, so that the token travels in the Authorization header
// (EventSource cannot send headers, and a token in a URL would end up in logs and histories).
async function startLive () {
  stopLive()
  const controller = new AbortController(); live = controller
  const q = new URLSearchParams(filters())
  try {
    const resp = await fetch(`${base()}/events/stream?${q}`, { headers: { Authorization: `Bearer ${token()}` }, signal: controller.signal })
    if (resp.status === 401) { signOut(); return }
    if (!resp.ok) { showError((await resp.json()).detail); return }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buffer += value
      let end
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const message = buffer.slice(0, end); buffer = buffer.slice(end + 2)
        const data = message.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n')
        if (!data) continue
        const e = JSON.parse(data)
        $('rows').prepend(row(e, true))
        bumpLast($('histogram'), e.at)
      }
    }
  } catch (err) {
    if (err.name !== 'AbortError') showError(err.message)
  }
}

function guard (fn) { return (...args) => fn(...args).catch((err) => showError(err.message)) }

$('signin').addEventListener('submit', guard(async (ev) => {
  ev.preventDefault()
  sessionStorage.setItem('eventsapi.token', $('token').value.trim())
  $('token').value = ''
  await enter()
}))
$('signout').addEventListener('click', signOut)
$('bucket').addEventListener('change', guard(loadKeys))
for (const id of ['event', 'app', 'server', 'interval', 'days', 'tz']) $(id).addEventListener('change', guard(refresh))
$('more').addEventListener('click', guard(loadMore))
$('live').addEventListener('change', () => ($('live').checked ? startLive() : stopLive()))

async function enter () {
  $('signin').hidden = true; $('board').hidden = false; $('signout').hidden = false
  if (!$('tz').value) $('tz').value = Intl.DateTimeFormat().resolvedOptions().timeZone
  await loadBuckets()
}

if (token()) guard(enter)()

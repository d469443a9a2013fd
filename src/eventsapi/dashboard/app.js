// The dashboard: sign in with a token (kept in sessionStorage, sent only to this origin, only
// in the Authorization header), pick a bucket and an event, see its histogram (by app or
// server if asked) and its events, zoom into a range, follow the live tail. The view lives in
// the URL fragment (never the token), so a reload or a shared link reopens it. Plain modules,
// no build step, no third-party code.
import { barSpan, drawChart, colorOf } from './chart.js'
import { offset, timeLabel, zoneName } from './time.js'

const $ = (id) => document.getElementById(id)
const PAGE = 20
const MAX_ROWS = 200 // rows the table keeps while live events arrive; "load more" gives the rest
const number = new Intl.NumberFormat('en-US')

let model = null // the loaded histogram: {starts, end, interval, tz, days, group, series}
let zoom = null // {start, end} selected on the chart, or null
let cursor = null // X-Next-Cursor of the last page
let resumeFrom = null // after trimming live rows: the last kept row, where "load more" continues
let inflight = null // AbortController of the refresh in flight: only one at a time
let live = null // AbortController of the live feed
let lastEventId = null
let redrawPending = false

function token () { return sessionStorage.getItem('eventsapi.token') }

function showError (text) {
  $('error').textContent = text; $('error').hidden = !text
  for (const id of ['chart-section', 'events-section']) $(id).classList.toggle('stale', Boolean(text))
}

function signOut () {
  sessionStorage.removeItem('eventsapi.token')
  stopLive()
  $('board').hidden = true; $('signin').hidden = false; $('signout').hidden = true; $('live-state').hidden = true
}

class Refused extends Error {}

async function api (path, body, signal) {
  const headers = { Authorization: `Bearer ${token()}` }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const resp = await fetch(path, { method: body === undefined ? 'GET' : 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body), signal })
  if (resp.status === 401) { signOut(); throw new Refused('the token was refused: sign in again') }
  if (!resp.ok) {
    let detail = `${resp.status} ${resp.statusText}`
    try { detail = (await resp.json()).detail || detail } catch (e) { /* not problem+json */ }
    throw new Error(detail)
  }
  return resp
}

const base = () => `/api/bucket/${encodeURIComponent($('bucket').value)}/data`
const tz = () => $('tz').value.trim() || Intl.DateTimeFormat().resolvedOptions().timeZone

function filters () {
  const f = { event_name: $('event').value }
  if ($('app').value) f.app_name = $('app').value
  if ($('server').value) f.server_name = $('server').value
  return f
}

// -- the view in the URL fragment -------------------------------------------------------------

const VIEW = ['bucket', 'event', 'app', 'server', 'interval', 'days', 'tz', 'group']

function writeFragment () {
  const q = new URLSearchParams()
  for (const id of VIEW) if ($(id).value) q.set(id, $(id).value)
  if (zoom) { q.set('start', zoom.start); q.set('end', zoom.end) }
  if ($('live').checked) q.set('live', '1')
  history.replaceState(null, '', `#${q}`)
}

function readFragment () {
  const q = new URLSearchParams(location.hash.slice(1))
  const view = {}
  for (const id of VIEW) if (q.has(id)) view[id] = q.get(id)
  const start = Number(q.get('start')); const end = Number(q.get('end'))
  view.zoom = start && end > start ? { start, end } : null
  view.live = q.get('live') === '1'
  return view
}

function setSelect (select, value) {
  if (value !== undefined && [...select.options].some((o) => o.value === value)) select.value = value
}

// -- loading ----------------------------------------------------------------------------------

async function loadBuckets (view) {
  const buckets = await (await api('/api/bucket')).json()
  $('bucket').replaceChildren(...buckets.map((b) => new Option(b.name, b._id)))
  setSelect($('bucket'), view.bucket)
  await loadKeys(view)
}

async function loadKeys (view = {}) {
  zoom = view.zoom || null
  if (!$('bucket').value) return refresh()
  const keys = await (await api(`${base()}/eventsKeysByApp`)).json()
  const names = [...new Set(keys.flatMap((k) => k.events))].sort()
  const current = view.event || $('event').value
  $('event').replaceChildren(...names.map((n) => new Option(n, n)))
  setSelect($('event'), current)
  const app = view.app === undefined ? $('app').value : view.app
  $('app').replaceChildren(new Option('all apps', ''), ...keys.map((k) => new Option(k.app_name, k.app_name)))
  setSelect($('app'), app)
  await Promise.all([refresh(), loadAlerts()])
}

// One refresh at a time: a newer one aborts the one in flight, whose answers are then dropped.
async function refresh () {
  if (inflight) inflight.abort()
  const controller = new AbortController(); inflight = controller
  stopLive()
  writeFragment()
  try {
    showError('')
    if (!$('event').value) {
      model = null; draw(); $('rows').replaceChildren(); $('more').hidden = true
      $('row-count').textContent = ''
      return
    }
    const body = { ...filters(), interval: $('interval').value, days: Number($('days').value) || 2, tz: tz() }
    if ($('group').value) body.group_by = $('group').value
    const answer = await (await api(`${base()}/events/stats`, body, controller.signal)).json()
    if (controller.signal.aborted) return
    model = toModel(answer, body)
    draw()
    await loadRows(controller.signal)
    if ($('live').checked && !controller.signal.aborted) startLive()
  } catch (err) {
    if (err.name === 'AbortError' || controller.signal.aborted) return
    if (!(err instanceof Refused)) showError(err.message)
  } finally {
    if (inflight === controller) inflight = null
  }
}

function toModel (answer, body) {
  const grouped = !Array.isArray(answer)
  const pairs = grouped ? (answer.series[0] ? answer.series[0].points : []) : answer
  const starts = pairs.map(([t]) => t)
  const step = { minute: 60_000, hour: 3_600_000, day: 86_400_000 }[body.interval]
  const series = grouped
    ? answer.series.map((s) => ({ key: body.group_by, value: s[body.group_by], other: s.other, counts: s.points.map(([, c]) => c) }))
    : [{ key: '', value: null, other: false, counts: pairs.map(([, c]) => c) }]
  // A grouped answer with no series has no windows: the empty state says so.
  return { starts, end: starts.length ? starts[starts.length - 1] + step : 0, interval: body.interval, tz: body.tz, days: body.days, group: body.group_by || '', series, filters: filters() }
}

// The windows on screen: all of them, or those of the zoomed range.
function shown () {
  if (!model) return null
  if (!zoom) return model
  const first = model.starts.findIndex((t) => t >= zoom.start)
  let last = model.starts.findIndex((t) => t >= zoom.end)
  if (last < 0) last = model.starts.length
  if (first < 0 || last <= first) return { ...model, starts: [], series: [] }
  return {
    ...model,
    starts: model.starts.slice(first, last),
    end: last < model.starts.length ? model.starts[last] : model.end,
    series: model.series.map((s) => ({ ...s, counts: s.counts.slice(first, last) }))
  }
}

function total (view) { return view.series.reduce((sum, s) => sum + s.counts.reduce((a, c) => a + c, 0), 0) }

function describeRange (view) {
  if (zoom) return `between ${timeLabel(zoom.start, view.tz)} and ${timeLabel(zoom.end, view.tz)}`
  const days = Number(view.days)
  return days === 1 ? 'in the last day' : `in the last ${number.format(days)} days`
}

function draw () {
  redrawPending = false
  const view = shown()
  const chart = $('histogram')
  if (!view) {
    $('chart-title').textContent = $('bucket').value ? 'No events in this bucket yet' : 'No buckets yet'
    chart.replaceChildren(); $('legend').replaceChildren(); $('empty').hidden = true
    return
  }
  const count = total(view)
  const f = view.filters
  const what = [f.event_name, f.app_name && `app ${f.app_name}`, f.server_name !== undefined && `server ${f.server_name || '(none)'}`].filter(Boolean).join(' · ')
  const by = view.group ? `, by ${view.group === 'app_name' ? 'app' : 'server'}` : ''
  const zone = zoneName(view.tz, view.end || Date.now())
  $('chart-title').textContent = `${what}: ${number.format(count)} events ${describeRange(view)}, per ${view.interval}${by} — ${zone}`
  $('zoom').hidden = !zoom
  if (zoom) $('zoom-text').textContent = `Showing ${describeRange(view)}.`
  const empty = count === 0
  $('empty').hidden = !empty
  $('empty').textContent = empty ? `No events of “${f.event_name}” ${describeRange(view)}.` : ''
  $('chart-hint').hidden = empty
  $('legend').replaceChildren(...(view.group ? view.series.map((s, i) => legendItem(s, i, view)) : []))
  if (empty) { chart.replaceChildren(); return }
  const { perBar } = drawChart(chart, view, select)
  if (perBar > 1) $('chart-title').textContent += ` (bars of ${barSpan(perBar, view.interval)})`
}

function legendItem (s, i, view) {
  const li = document.createElement('li')
  li.dataset.testid = 'legend-item'
  const swatch = document.createElement('span')
  swatch.className = 'swatch'; swatch.style.background = colorOf(s, i)
  const sum = s.counts.reduce((a, c) => a + c, 0)
  const name = s.other ? 'other' : (s.value === '' ? '(no server)' : s.value)
  li.append(swatch, `${name}: ${number.format(sum)}`)
  return li
}

function scheduleDraw () {
  if (redrawPending) return
  redrawPending = true
  requestAnimationFrame(draw)
}

async function select (start, end) {
  zoom = { start, end }
  writeFragment()
  draw()
  await guarded(() => loadRows())
}

// -- alerts (docs/api.md §5.13): the bucket's rules and their state ------------------------------

async function loadAlerts () {
  const rules = await (await api(`${base()}/alerts`)).json()
  $('alerts-section').hidden = rules.length === 0
  $('alerts').replaceChildren(...rules.map((r) => {
    const li = document.createElement('li')
    li.dataset.testid = 'alert-item'
    li.dataset.state = r.state
    const what = [r.event_name, r.app_name && `from ${r.app_name}`, r.server_name && `on ${r.server_name}`].filter(Boolean).join(' ')
    const parts = [`${r.name}: ${r.state}`, `${what}, ${number.format(r.count)} of ${number.format(r.threshold)} in ${r.window}`]
    if (r.last_fired) parts.push(`last fired ${timeLabel(r.last_fired, tz())}`)
    if (r.last_delivery) parts.push(`${r.last_delivery.status} (${r.last_delivery.attempts} attempt${r.last_delivery.attempts === 1 ? '' : 's'})`)
    li.textContent = parts.join(' · ')
    return li
  }))
}

// -- the table ----------------------------------------------------------------------------------

function row (e, fresh) {
  const tr = document.createElement('tr')
  tr.dataset.eventId = e.id
  tr.dataset.at = e.at
  if (fresh) tr.className = 'new'
  const json = JSON.stringify(e.data)
  for (const text of [timeLabel(e.at, tz()), e.app_name, e.server_name]) {
    const td = document.createElement('td'); td.textContent = text || '—'; tr.appendChild(td)
  }
  const td = document.createElement('td')
  const details = document.createElement('details')
  const summary = document.createElement('summary')
  summary.textContent = json.length > 80 ? json.slice(0, 77) + '...' : json
  const pre = document.createElement('pre')
  pre.textContent = JSON.stringify(e.data, null, 2)
  details.append(summary, pre); td.appendChild(details); tr.appendChild(td)
  return tr
}

function rangeOfRows () {
  if (zoom) return { start: zoom.start, end: zoom.end }
  return model && model.starts.length ? { start: model.starts[0], end: model.end } : {}
}

async function loadRows (signal) {
  cursor = null; resumeFrom = null
  $('rows').replaceChildren()
  await loadMore(signal)
}

async function loadMore (signal) {
  const body = { ...filters(), ...rangeOfRows(), limit: PAGE }
  let skip = null
  if (cursor) body.cursor = cursor
  else if (resumeFrom) {
    // The rows below `resumeFrom` were let go while live: read again from its millisecond and
    // drop what is already on screen (same millisecond, id not below it).
    body.end = resumeFrom.at + 1; body.limit = PAGE + 50
    skip = resumeFrom
  }
  const resp = await api(`${base()}/events`, body, signal)
  let events = await resp.json()
  if (signal && signal.aborted) return
  if (skip) events = events.filter((e) => e.at < skip.at || (e.at === skip.at && e.id < skip.id))
  for (const e of events) $('rows').appendChild(row(e, false))
  cursor = resp.headers.get('X-Next-Cursor'); resumeFrom = null
  $('more').hidden = !cursor
  countRows()
}

function countRows () {
  const view = shown()
  const n = $('rows').children.length
  const of = view ? total(view) : n
  $('row-count').textContent = view ? `${number.format(n)} newest of ${number.format(Math.max(of, n))} ${describeRange(view)}` : ''
}

// -- live -----------------------------------------------------------------------------------------

function setLiveState (state, text) {
  const el = $('live-state')
  el.hidden = false; el.dataset.state = state; el.textContent = `live: ${text || state}`
}

function stopLive () {
  if (live) { live.abort(); live = null }
  setLiveState('off')
  if (!$('live').checked) $('live-state').hidden = true
}

function startLive () {
  stopLive()
  const controller = new AbortController(); live = controller
  lastEventId = null // a new view starts from now: what came before is in the loaded data
  follow(controller).catch((err) => { if (!controller.signal.aborted) showError(err.message) })
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms)
  signal.addEventListener('abort', () => { clearTimeout(timer); resolve() }, { once: true })
})

// Server-Sent Events read with fetch, so that the token travels in the Authorization header
// (EventSource cannot send headers, and a token in a URL would end up in logs and histories).
// A dropped feed reconnects with backoff and Last-Event-ID: nothing is missed or shown twice.
async function follow (controller) {
  const { signal } = controller
  const q = new URLSearchParams(filters())
  let backoff = 1000
  while (!signal.aborted) {
    setLiveState('connecting')
    let ended = null
    try {
      const headers = { Authorization: `Bearer ${token()}` }
      if (lastEventId) headers['Last-Event-ID'] = lastEventId
      const resp = await fetch(`${base()}/events/stream?${q}`, { headers, signal })
      if (resp.status === 401) { signOut(); return }
      if (resp.status === 400 && lastEventId) { lastEventId = null; continue } // cannot resume: from now on
      if (!resp.ok) throw new Error(`live feed: ${resp.status}`)
      setLiveState('connected'); backoff = 1000
      ended = await read(resp, signal)
    } catch (err) {
      if (signal.aborted) return
    }
    if (ended === 'token expired' || ended === 'key revoked') { signOut(); showError(`The live feed ended: ${ended}. Sign in again.`); return }
    setLiveState('reconnecting', `reconnecting in ${backoff / 1000} s`)
    await sleep(backoff, signal)
    backoff = Math.min(30_000, backoff * 2)
  }
}

async function read (resp, signal) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done || signal.aborted) return null
    buffer += value
    let cut
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const message = buffer.slice(0, cut); buffer = buffer.slice(cut + 2)
      let id = null; let kind = 'message'; const data = []
      for (const line of message.split('\n')) {
        if (line.startsWith('id: ')) id = line.slice(4)
        else if (line.startsWith('event: ')) kind = line.slice(7)
        else if (line.startsWith('data: ')) data.push(line.slice(6))
      }
      if (!data.length) continue
      if (kind === 'end') return JSON.parse(data.join('\n')).reason
      arrived(JSON.parse(data.join('\n')))
      if (id) lastEventId = id
    }
  }
}

// A live event past the view's last window (time has moved on): the view grows by whole
// windows, aligned as the service aligns them, so the event is counted without a reload (a
// reload would restart the feed and could miss what arrives meanwhile).
function extendTo (at) {
  if (!model.starts.length || at >= model.end + 7 * 86_400_000) return
  while (at >= model.end) {
    model.starts.push(model.end)
    for (const s of model.series) s.counts.push(0)
    model.end = nextWindow(model.end, model.interval, model.tz)
  }
}

function nextWindow (start, interval, tz) {
  if (interval === 'minute') return start + 60_000
  if (interval === 'hour') return start + 3_600_000
  const guess = start + 86_400_000 // the next local midnight: a day, give or take a clock change
  return guess + offset(tz, start) - offset(tz, guess)
}

function arrived (e) {
  if (!model) return
  if (e.at >= model.end && e.at <= Date.now() + 60_000) extendTo(e.at)
  const i = windowOf(e.at)
  if (i >= 0) {
    let s = model.series[0]
    if (model.group) {
      const value = e[model.group]
      s = model.series.find((x) => !x.other && x.value === value) || model.series.find((x) => x.other)
      if (!s) { s = { key: model.group, value, other: false, counts: new Array(model.starts.length).fill(0) }; model.series.push(s) }
    }
    if (s) s.counts[i] += 1
    scheduleDraw()
  }
  if (zoom && (e.at < zoom.start || e.at >= zoom.end)) return
  $('rows').prepend(row(e, true))
  const rows = $('rows').children
  if (rows.length > MAX_ROWS) {
    while (rows.length > MAX_ROWS) rows[rows.length - 1].remove()
    const last = rows[rows.length - 1]
    resumeFrom = { at: Number(last.dataset.at), id: last.dataset.eventId }; cursor = null
    $('more').hidden = false
  }
  countRows()
}

function windowOf (at) {
  const starts = model.starts
  if (!starts.length || at < starts[0] || at >= model.end) return -1
  let lo = 0; let hi = starts.length - 1
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= at) lo = mid; else hi = mid - 1 }
  return lo
}

// -- wiring ---------------------------------------------------------------------------------------

async function guarded (fn) {
  try { await fn() } catch (err) { if (!(err instanceof Refused) && err.name !== 'AbortError') showError(err.message) }
}

$('signin').addEventListener('submit', (ev) => {
  ev.preventDefault()
  sessionStorage.setItem('eventsapi.token', $('token').value.trim())
  $('token').value = ''
  guarded(enter)
})
$('signout').addEventListener('click', signOut)
$('bucket').addEventListener('change', () => guarded(() => loadKeys({ event: $('event').value })))
for (const id of ['event', 'app', 'server', 'interval', 'days', 'tz', 'group']) {
  $(id).addEventListener('change', () => { zoom = null; guarded(refresh) })
}
$('more').addEventListener('click', () => guarded(() => loadMore()))
$('unzoom').addEventListener('click', () => { zoom = null; writeFragment(); draw(); guarded(() => loadRows()) })
$('live').addEventListener('change', () => {
  writeFragment()
  if ($('live').checked) startLive(); else stopLive()
})
new ResizeObserver(() => { if (model) scheduleDraw() }).observe($('histogram'))

async function enter () {
  $('signin').hidden = true; $('board').hidden = false; $('signout').hidden = false
  const view = readFragment()
  for (const id of ['server', 'days', 'tz']) if (view[id] !== undefined) $(id).value = view[id]
  for (const id of ['interval', 'group']) setSelect($(id), view[id])
  if (!$('tz').value) $('tz').value = Intl.DateTimeFormat().resolvedOptions().timeZone
  $('live').checked = view.live
  await loadBuckets(view)
}

if (token()) guarded(enter); else $('signin').hidden = false

// Time in a chosen IANA zone, fast enough for 100,000 windows: formatters are built once per
// (zone, options), and a zone's UTC offset is looked up once per 15-minute UTC slot (every
// offset change since 1970 happened on a quarter hour), so a local date is arithmetic.

const formatters = new Map()

export function formatter (tz, options) {
  const key = tz + JSON.stringify(options)
  let f = formatters.get(key)
  if (!f) { f = new Intl.DateTimeFormat('en-GB', { timeZone: tz, ...options }); formatters.set(key, f) }
  return f
}

const SLOT = 900_000
const offsets = new Map()

// The zone's offset from UTC at instant t, in ms.
export function offset (tz, t) {
  const slot = Math.floor(t / SLOT)
  const key = tz + '|' + slot
  let off = offsets.get(key)
  if (off === undefined) {
    const p = {}
    const at = slot * SLOT
    const f = formatter(tz, { year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', hourCycle: 'h23' })
    for (const { type, value } of f.formatToParts(new Date(at))) p[type] = Number(value)
    off = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute) - at
    if (offsets.size > 200_000) offsets.clear()
    offsets.set(key, off)
  }
  return off
}

// Local wall-clock fields of instant t in tz (minute precision).
export function local (tz, t) {
  const d = new Date(t + offset(tz, t))
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), hour: d.getUTCHours(), minute: d.getUTCMinutes() }
}

const MINUTE = 60_000; const HOUR = 3_600_000; const DAY = 86_400_000
// Tick steps at natural boundaries, finest first: [nominal length, is t on such a boundary?, label options].
const HM = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }
const DM = { day: 'numeric', month: 'short' }
const STEPS = [
  ...[1, 2, 5, 10, 15, 30].map((k) => [k * MINUTE, (l) => l.minute % k === 0, HM]),
  ...[1, 2, 3, 6, 12].map((k) => [k * HOUR, (l) => l.minute === 0 && l.hour % k === 0, HM]),
  [DAY, (l) => l.minute === 0 && l.hour === 0, DM],
  [2 * DAY, (l) => l.minute === 0 && l.hour === 0 && l.day % 2 === 1 && l.day < 31, DM],
  [7 * DAY, (l) => l.minute === 0 && l.hour === 0 && [1, 8, 15, 22].includes(l.day), DM],
  ...[1, 3, 6].map((k) => [k * 30 * DAY, (l) => l.minute === 0 && l.hour === 0 && l.day === 1 && (l.month - 1) % k === 0, { month: 'short', year: 'numeric' }]),
  [365 * DAY, (l) => l.minute === 0 && l.hour === 0 && l.day === 1 && l.month === 1, { year: 'numeric' }]
]

// Ticks among the window starts `starts` (ascending), each with its index: at most about `most`, on the
// finest natural boundary that allows it, each with its label in tz. A tick that starts a new
// day in an hour view says the date instead of the time.
export function timeTicks (starts, tz, most) {
  if (!starts.length) return []
  const span = starts[starts.length - 1] - starts[0] + 1
  // The coarsest step that fits; if its boundaries miss this range (a week tick in 7 days may
  // fall once), finer ones up to twice as many ticks.
  const fits = STEPS.findIndex(([len]) => span / len <= most)
  for (let k = fits < 0 ? STEPS.length - 1 : fits; k >= 0 && span / STEPS[k][0] <= 2 * most; k--) {
    const ticks = ticksOf(starts, tz, STEPS[k])
    if (ticks.length >= 2) return ticks
  }
  // No natural boundary in range (a few windows): evenly spaced windows, labelled in full.
  const every = Math.max(1, Math.ceil(starts.length / most))
  return starts.filter((_, i) => i % every === 0).map((t, k) => ({ t, i: k * every, label: formatter(tz, { ...DM, ...HM }).format(new Date(t)) }))
}

function ticksOf (starts, tz, [length, on, options]) {
  const ticks = []
  starts.forEach((t, i) => {
    const l = local(tz, t)
    if (!on(l)) return
    const newDay = length < DAY && l.hour === 0 && l.minute === 0
    ticks.push({ t, i, label: formatter(tz, newDay ? DM : options).format(new Date(t)) })
  })
  return ticks
}

// "14:05", "3 Dec 14:00" or "3 Dec 2026": a window's start, as precise as its interval.
export function windowLabel (t, interval, tz) {
  const options = interval === 'day' ? { day: 'numeric', month: 'short', year: 'numeric' } : { weekday: 'short', day: 'numeric', month: 'short', ...HM }
  return formatter(tz, options).format(new Date(t))
}

export function timeLabel (t, tz) {
  return formatter(tz, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' }).format(new Date(t))
}

export function zoneName (tz, t) {
  const part = formatter(tz, { timeZoneName: 'short' }).formatToParts(new Date(t)).find((p) => p.type === 'timeZoneName')
  return part ? `${tz} (${part.value})` : tz
}

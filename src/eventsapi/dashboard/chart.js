// The histogram, drawn as SVG in pixel space (the container's own width; text is never
// stretched): a y-axis from zero with round ticks and gridlines, x ticks on natural boundaries
// in the chosen zone, stacked series when grouped, a tooltip on hover, drag to select a range.
// When the windows outnumber the pixels, consecutive windows share a bar (the title says how
// many), so a minute view of weeks stays readable; zooming in gives one bar per window again.
import { timeTicks, windowLabel, formatter } from './time.js'

const NS = 'http://www.w3.org/2000/svg'
const PALETTE = ['#3b6fb6', '#e07b39', '#3d9a62', '#c44e52', '#8172b3', '#937860', '#da8bc3', '#5f9ea0', '#b8a22e', '#64b5cd']
// Windows per bar when they outnumber the pixels: whole hours, days, weeks where possible.
const NICE = {
  minute: [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080],
  hour: [1, 2, 3, 6, 12, 24, 48, 168, 336, 720],
  day: [1, 2, 7, 14, 28, 91, 182, 364]
}
const UNITS = [['week', 10080], ['day', 1440], ['hour', 60], ['minute', 1]]

// "3 hours" for 180 minute windows: how much time one bar holds.
export function barSpan (perBar, interval) {
  const minutes = perBar * { minute: 1, hour: 60, day: 1440 }[interval]
  const [unit, size] = UNITS.find(([, size]) => minutes % size === 0)
  const k = minutes / size
  return `${k} ${unit}${k === 1 ? '' : 's'}`
}

export const OTHER_COLOR = '#9aa3ad'
const number = new Intl.NumberFormat('en-US')

export function colorOf (series, i) { return series.other ? OTHER_COLOR : PALETTE[i % PALETTE.length] }

function el (name, attrs, text) {
  const node = document.createElementNS(NS, name)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v)
  if (text !== undefined) node.textContent = text
  return node
}

// 0, then multiples of 1, 2 or 5 × 10^k up to at least `max`: about 4 steps, whole numbers.
export function yTicks (max) {
  if (max <= 0) return [0, 1]
  const raw = max / 4
  const power = 10 ** Math.floor(Math.log10(raw))
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw))
  const ticks = []
  for (let v = 0; v < max + step; v += step) ticks.push(v)
  return ticks
}

// model: {starts, end, interval, tz, series: [{key, value, other, counts}]}, counts per window.
// Returns {perBar}; calls onSelect(start, end) after a drag across at least two pixels.
export function drawChart (container, model, onSelect) {
  const width = Math.max(280, container.clientWidth || 800)
  const height = width < 520 ? 200 : 260
  const { starts, series } = model
  const n = starts.length
  const top = 10; const right = 12; const bottom = 24
  // Bars of at least 3 px (the y labels take at most ~60 px of the width), of a round number of windows.
  const need = Math.max(1, Math.ceil(n / Math.floor((width - 72 - right) / 3)))
  const perBar = NICE[model.interval].find((k) => k >= need) || need
  const bars = Math.ceil(n / perBar)

  // Counts per bar and series; the y scale follows the largest stacked bar.
  const stacked = series.map((s) => {
    const sums = new Array(bars).fill(0)
    for (let i = 0; i < n; i++) sums[Math.floor(i / perBar)] += s.counts[i]
    return sums
  })
  const totals = new Array(bars).fill(0)
  for (const sums of stacked) sums.forEach((c, b) => { totals[b] += c })
  const ticks = yTicks(Math.max(0, ...totals))
  const yMax = ticks[ticks.length - 1]
  const left = 14 + 7 * number.format(yMax).length
  const plotW = width - left - right; const plotH = height - top - bottom
  const barW = plotW / bars
  const y = (v) => top + plotH - (plotH * v) / yMax

  const svg = el('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart' })
  for (const v of ticks) {
    svg.appendChild(el('line', { x1: left, x2: width - right, y1: y(v), y2: y(v), class: v === 0 ? 'axis' : 'grid' }))
    svg.appendChild(el('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end', 'data-testid': 'y-tick' }, number.format(v)))
  }
  const xTicks = timeTicks(starts, model.tz, Math.max(2, Math.floor(plotW / 90)))
  for (const { i, label } of xTicks) {
    const x = left + (i / n) * plotW
    svg.appendChild(el('line', { x1: x, x2: x, y1: top + plotH, y2: top + plotH + 4, class: 'axis' }))
    const anchor = x < left + 30 ? 'start' : x > width - right - 30 ? 'end' : 'middle'
    svg.appendChild(el('text', { x, y: height - 6, 'text-anchor': anchor, 'data-testid': 'x-tick' }, label))
  }
  const gap = barW > 4 ? 1 : 0
  for (let b = 0; b < bars; b++) {
    let base = 0
    series.forEach((s, k) => {
      const c = stacked[k][b]
      if (c === 0 && (series.length > 1 || s.key)) return
      const attrs = {
        x: left + b * barW + gap / 2, y: y(base + c), width: Math.max(0.5, barW - gap), height: y(base) - y(base + c),
        fill: colorOf(s, k), 'data-start': starts[b * perBar], 'data-count': c
      }
      if (s.key) attrs['data-series'] = s.other ? '(other)' : s.value
      svg.appendChild(el('rect', attrs))
      base += c
    })
  }
  const band = el('rect', { x: 0, y: top, width: 0, height: plotH, class: 'selection', visibility: 'hidden' })
  const overlay = el('rect', { x: left, y: top, width: plotW, height: plotH, class: 'overlay' })
  svg.append(band, overlay)

  const tip = document.createElement('div')
  tip.className = 'tip'; tip.hidden = true; tip.setAttribute('role', 'status')
  const barAt = (clientX) => {
    const box = svg.getBoundingClientRect()
    return Math.min(bars - 1, Math.max(0, Math.floor((clientX - box.left - left) / barW)))
  }
  const windowEnd = (i) => (i + 1 < n ? starts[i + 1] : model.end)
  overlay.addEventListener('mousemove', (ev) => {
    const b = barAt(ev.clientX)
    const first = b * perBar; const last = Math.min(n, first + perBar) - 1
    const when = perBar === 1 ? windowLabel(starts[first], model.interval, model.tz)
      : `${windowLabel(starts[first], model.interval, model.tz)} – ${windowLabel(starts[last], model.interval, model.tz)}`
    const lines = [when, `${number.format(totals[b])} events`]
    if (series.length > 1 || (series[0] && series[0].key)) {
      series.forEach((s, k) => { if (stacked[k][b]) lines.push(`${s.other ? 'other' : s.value || '(no server)'}: ${number.format(stacked[k][b])}`) })
    }
    tip.textContent = lines.join('\n')
    tip.hidden = false
    const box = container.getBoundingClientRect()
    const x = ev.clientX - box.left
    tip.style.left = `${Math.min(x + 12, width - 180)}px`
    tip.style.top = `${top + 4}px`
  })
  overlay.addEventListener('mouseleave', () => { tip.hidden = true })

  // Drag to select: the range of whole windows under the band (the pointer is captured, so a
  // drag that ends outside the chart still ends).
  let from = null
  overlay.addEventListener('pointerdown', (ev) => {
    from = ev.clientX; overlay.setPointerCapture(ev.pointerId); ev.preventDefault()
  })
  overlay.addEventListener('pointermove', (ev) => {
    if (from === null) return
    const box = svg.getBoundingClientRect()
    const a = Math.max(left, Math.min(from, ev.clientX) - box.left)
    const b = Math.min(width - right, Math.max(from, ev.clientX) - box.left)
    band.setAttribute('x', a); band.setAttribute('width', Math.max(0, b - a)); band.setAttribute('visibility', 'visible')
  })
  overlay.addEventListener('pointerup', (ev) => {
    if (from === null) return
    const a = Math.min(from, ev.clientX); const b = Math.max(from, ev.clientX)
    from = null
    band.setAttribute('visibility', 'hidden')
    if (b - a < 3 || !onSelect) return
    const first = barAt(a) * perBar; const last = Math.min(n - 1, (barAt(b) + 1) * perBar - 1)
    onSelect(starts[first], windowEnd(last))
  })

  container.replaceChildren(svg, tip)
  const total = totals.reduce((x, c) => x + c, 0)
  container.setAttribute('aria-label', `histogram: ${number.format(total)} events in ${n} windows from ` +
    `${formatter(model.tz, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(starts[0]))}`)
  return { perBar }
}

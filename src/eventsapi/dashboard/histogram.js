// The histogram as an SVG drawn by hand: one bar per window, a <title> per bar for hover (and
// for screen readers), axis labels in the chosen time zone.
const NS = 'http://www.w3.org/2000/svg'

function el (name, attrs, text) {
  const node = document.createElementNS(NS, name)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v)
  if (text !== undefined) node.textContent = text
  return node
}

export function drawHistogram (container, points, formatTime) {
  const width = 1000; const height = 180; const bottom = 20; const left = 30
  const max = Math.max(1, ...points.map(([, c]) => c))
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none' })
  const step = (width - left) / Math.max(1, points.length)
  points.forEach(([t, count], i) => {
    const h = (height - bottom - 5) * count / max
    const bar = el('rect', {
      x: left + i * step, y: height - bottom - h, width: Math.max(1, step - 1), height: h,
      'data-start': t, 'data-count': count, tabindex: '-1'
    })
    bar.appendChild(el('title', {}, `${formatTime(t)}: ${count}`))
    svg.appendChild(bar)
  })
  svg.appendChild(el('text', { x: 0, y: 12 }, String(max)))
  if (points.length) {
    svg.appendChild(el('text', { x: left, y: height - 5 }, formatTime(points[0][0])))
    svg.appendChild(el('text', { x: width - 150, y: height - 5 }, formatTime(points[points.length - 1][0])))
  }
  container.replaceChildren(svg)
  const total = points.reduce((sum, [, c]) => sum + c, 0)
  container.setAttribute('aria-label', `histogram: ${total} events in ${points.length} windows` +
    (points.length ? ` from ${formatTime(points[0][0])}` : ''))
}

// A live event falls in the last window: its bar grows by one.
export function bumpLast (container, at) {
  const bars = container.querySelectorAll('rect')
  const last = bars[bars.length - 1]
  if (!last || at < Number(last.dataset.start)) return
  last.dataset.count = String(Number(last.dataset.count) + 1)
  const title = last.querySelector('title')
  if (title) title.textContent = title.textContent.replace(/: \d+$/, `: ${last.dataset.count}`)
}

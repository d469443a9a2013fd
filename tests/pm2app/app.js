// An app run under PM2 by tests/test_pm2_module.py: it emits a custom event, reports a
// handled error, crashes once, and emits TICKS "tick" events whenever the test asks (a file).
'use strict'
const fs = require('fs')
const io = require(process.env.PM2IO_PATH)

setTimeout(() => {
  io.emit('deploy', { rev: 'abc', who: 'ci' })
  io.notifyError(new Error('handled boom'))
  if (!fs.existsSync(process.env.CRASH_MARKER)) {
    fs.writeFileSync(process.env.CRASH_MARKER, 'crashed once')
    setTimeout(() => { throw new Error('crash once') }, 500)
  }
}, 1000)

setInterval(() => {
  const file = process.env.TICK_FILE
  if (!fs.existsSync(file)) return
  const n = Number(fs.readFileSync(file, 'utf8'))
  fs.unlinkSync(file)
  for (let i = 0; i < n; i++) io.emit('tick', { i })
}, 200)

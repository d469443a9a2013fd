// pm2-eventsapi: a PM2 module that forwards every custom event (io.emit), process event
// (start, exit, restart, stop, ...) and exception of the apps PM2 runs to eventsapi.
// Configure with `pm2 set pm2-eventsapi:url|token|bucket|flush_ms|max_batch|max_queue|timeout_ms|server_name`;
// the token is best an ingest key (`eventsapi keys create`), which does not expire.
'use strict'
const path = require('path')
const os = require('os')
const io = require('@pm2/io')
const pm2 = require('pm2')
const { customEvent, processEvent, exception, defaultServerName } = require('./lib/mapping')
const { Forwarder } = require('./lib/forwarder')

io.initModule({}) // registers with PM2 as a module (its metrics show in `pm2 show`)
// The package.json defaults, overridden by `pm2 set pm2-eventsapi:KEY VALUE` (PM2 hands those
// to the module as JSON in the environment variable named after it).
const conf = Object.assign({}, require('./package.json').config, JSON.parse(process.env['pm2-eventsapi'] || '{}'))
const settings = {
  url: conf.url,
  token: conf.token,
  bucket: conf.bucket,
  flush_ms: Number(conf.flush_ms) || 1000,
  max_batch: Number(conf.max_batch) || 500,
  max_queue: Number(conf.max_queue) || 100000,
  timeout_ms: Number(conf.timeout_ms) || 30000
}
const server = conf.server_name || defaultServerName()
const home = process.env.PM2_HOME || path.join(os.homedir(), '.pm2')
const forwarder = new Forwarder(settings, path.join(home, 'pm2-eventsapi.spool.ndjson'))

// Counters the PM2 way: `pm2 show pm2-eventsapi` lists them.
for (const name of ['sent', 'retried', 'dropped', 'rejected']) {
  io.metric({ name, value: () => forwarder.stats[name] })
}
io.metric({ name: 'queued', value: () => forwarder.queued })
io.metric({ name: 'auth', value: () => forwarder.auth }) // "ok", or "refused since <time>"

if (!settings.bucket || !settings.token) {
  console.error('pm2-eventsapi: set pm2-eventsapi:bucket and pm2-eventsapi:token (pm2 set ...)')
}

pm2.connect((err) => {
  if (err) throw err
  pm2.launchBus((err, bus) => {
    if (err) throw err
    bus.on('human:event', (packet) => forwarder.push(customEvent(packet, server)))
    bus.on('process:event', (packet) => forwarder.push(processEvent(packet, server)))
    bus.on('process:exception', (packet) => forwarder.push(exception(packet, server)))
  })
})

const timer = setInterval(() => forwarder.flush(), settings.flush_ms)
forwarder.flush() // what the spool kept from the last run

function stop () {
  clearInterval(timer)
  // What is not sent in time stays in the spool for the next start.
  const deadline = setTimeout(() => process.exit(0), 3000)
  forwarder.flush().finally(() => { clearTimeout(deadline); process.exit(0) })
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)

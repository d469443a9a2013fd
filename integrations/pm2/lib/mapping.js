// What PM2's bus says, as eventsapi events (docs: the README's PM2 module section).
// Pure functions: no I/O, tested by test/mapping.test.js.
'use strict'
const os = require('os')
const { randomUUID } = require('crypto')

const SELF = 'pm2-eventsapi'

// As PM2's own agent chooses it.
function defaultServerName (env = process.env) {
  return env.PM2_MACHINE_NAME || env.INSTANCE_NAME || os.hostname()
}

function base (packet, server, name) {
  const proc = packet.process || {}
  if (!proc.name || proc.name === SELF) return null // not ours to forward: our own process events
  return {
    id: randomUUID(), // given once: a retry of this event can never make a second one
    event_name: name,
    app_name: String(proc.name),
    server_name: server,
    at: typeof packet.at === 'number' ? packet.at : Date.now()
  }
}

// `human:event` (io.emit): the name is data.__name; the rest of data is the payload.
function customEvent (packet, server) {
  const data = Object.assign({}, packet.data || {})
  const name = data.__name
  delete data.__name
  if (typeof name !== 'string' || !name) return null
  const ev = base(packet, server, name)
  return ev && Object.assign(ev, { data })
}

// `process:event` (online, exit, restart, stop, ...): the packet carries the whole process
// record, environment (secrets) included, so only these fields leave.
function processEvent (packet, server) {
  if (typeof packet.event !== 'string') return null
  const ev = base(packet, server, `process:${packet.event}`)
  if (!ev) return null
  const proc = packet.process
  return Object.assign(ev, {
    data: {
      status: proc.status === undefined ? null : proc.status,
      exit_code: proc.exit_code === undefined ? null : proc.exit_code,
      restart_time: proc.restart_time === undefined ? null : proc.restart_time,
      manually: Boolean(packet.manually)
    }
  })
}

// `process:exception` (io.notifyError, uncaught exceptions).
function exception (packet, server) {
  const ev = base(packet, server, 'process:exception')
  if (!ev) return null
  const d = packet.data || {}
  const data = {}
  for (const key of ['message', 'name', 'stack', 'callsite', 'metadata']) {
    if (d[key] !== undefined) data[key] = d[key]
  }
  return Object.assign(ev, { data })
}

module.exports = { customEvent, processEvent, exception, defaultServerName, SELF }

// node --test: what each kind of PM2 bus packet becomes (run by tests/test_pm2_module.py).
'use strict'
const test = require('node:test')
const assert = require('node:assert')
const { customEvent, processEvent, exception, defaultServerName } = require('../lib/mapping')

const proc = { name: 'api', pm_id: 3, status: 'online', exit_code: 1, restart_time: 2, env: { SECRET: 's3cret' } }

test('a custom event: the name from data.__name, the rest of data as payload', () => {
  const ev = customEvent({ at: 1700000000000, data: { __name: 'deploy', rev: 'abc' }, process: proc }, 'web-1')
  assert.deepStrictEqual(
    { ...ev, id: undefined },
    { id: undefined, event_name: 'deploy', app_name: 'api', server_name: 'web-1', at: 1700000000000, data: { rev: 'abc' } }
  )
  assert.match(ev.id, /^[0-9a-f-]{36}$/)
  assert.strictEqual(customEvent({ data: { rev: 1 }, process: proc }, 's'), null) // no name
})

test('a process event carries picked fields only, never the environment', () => {
  const ev = processEvent({ event: 'exit', manually: true, at: 5, process: proc }, 's')
  assert.strictEqual(ev.event_name, 'process:exit')
  assert.deepStrictEqual(ev.data, { status: 'online', exit_code: 1, restart_time: 2, manually: true })
  assert.ok(!JSON.stringify(ev).includes('s3cret'))
})

test('exceptions keep message, name, stack, callsite, metadata', () => {
  const ev = exception({ data: { message: 'boom', name: 'Error', stack: 'at x', extra: 1 }, process: proc }, 's')
  assert.deepStrictEqual(ev.data, { message: 'boom', name: 'Error', stack: 'at x' })
})

test("the module's own process events are not forwarded", () => {
  assert.strictEqual(processEvent({ event: 'online', process: { name: 'pm2-eventsapi' } }, 's'), null)
})

test('the server name is chosen as PM2 does', () => {
  assert.strictEqual(defaultServerName({ PM2_MACHINE_NAME: 'm', INSTANCE_NAME: 'i' }), 'm')
  assert.strictEqual(defaultServerName({ INSTANCE_NAME: 'i' }), 'i')
})

// node --test: the forwarder against a real local HTTP server (run by tests/test_pm2_module.py):
// cut-off and missing answers are retried, a refused credential keeps every event, a batch
// too large is split, and the spool's cost per sent batch does not grow with the backlog.
'use strict'
const test = require('node:test')
const assert = require('node:assert')
const fs = require('fs')
const http = require('http')
const os = require('os')
const path = require('path')
const zlib = require('zlib')
const { Forwarder } = require('../lib/forwarder')

const quiet = { info () {}, warn () {}, error () {} }

// A server whose answer to each request is decided by `answer(events, req, res)`; it records
// the ids of every batch it received.
async function server (answer) {
  const received = []
  const srv = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const events = JSON.parse(zlib.gunzipSync(Buffer.concat(chunks)).toString())
      received.push({ ids: events.map((e) => e.id), token: req.headers.authorization })
      answer(events, req, res, received.length)
    })
  })
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${srv.address().port}`, received, close: () => { srv.closeAllConnections(); srv.close() } }
}

function ok (res, events) {
  res.writeHead(200, { 'Content-Type': 'application/json' })
  res.end(JSON.stringify({ accepted: events.length, rejected: [] }))
}

function forwarder (url, extra = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fwd-'))
  const conf = { url, token: 't1', bucket: 'b', max_batch: 500, max_queue: 200000, timeout_ms: 2000, ...extra }
  return new Forwarder(conf, path.join(dir, 'spool.ndjson'), quiet)
}

const ev = (i) => ({ id: `id-${i}`, event_name: 'e', app_name: 'a', at: 1, data: { i } })

async function drain (f, rounds = 50) {
  for (let i = 0; i < rounds && f.queued; i++) { f.backoffUntil = 0; await f.flush() }
}

test('an answer cut off mid-body is retried, and the module goes on sending', async () => {
  const srv = await server((events, req, res, n) => {
    if (n === 1) { // promises 100 bytes, sends 10, hangs up
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 100 })
      res.write('{"accepted')
      setTimeout(() => res.socket.destroy(), 20)
    } else ok(res, events)
  })
  const f = forwarder(srv.url)
  for (let i = 0; i < 3; i++) f.push(ev(i))
  await f.flush()
  assert.strictEqual(f.queued, 3) // not counted as sent
  await drain(f)
  f.push(ev(3)); await drain(f)
  assert.deepStrictEqual(srv.received.map((r) => r.ids.length), [3, 3, 1])
  assert.strictEqual(f.stats.sent, 4); assert.strictEqual(f.queued, 0)
  srv.close()
})

test('a service that never answers costs one timeout, not the module', async () => {
  const srv = await server(() => {}) // reads the request, answers nothing
  const f = forwarder(srv.url, { timeout_ms: 200 })
  f.push(ev(1))
  await f.flush()
  assert.strictEqual(f.stats.retried, 1); assert.strictEqual(f.queued, 1)
  srv.close()
})

test('a refused credential keeps every event until a new one is set; then each is sent once', async () => {
  const srv = await server((events, req, res) => {
    if (req.headers.authorization !== 'Bearer t2') {
      res.writeHead(401, { 'Content-Type': 'application/problem+json' }); res.end('{"detail":"token expired"}')
    } else ok(res, events)
  })
  const lines = []
  const f = forwarder(srv.url, { max_batch: 4 })
  f.log = { info () {}, warn () {}, error (m) { lines.push(m) } }
  for (let i = 0; i < 10; i++) f.push(ev(i))
  await f.flush(); f.backoffUntil = 0; await f.flush()
  assert.strictEqual(f.queued, 10); assert.strictEqual(f.stats.dropped, 0)
  assert.match(f.auth, /^refused since \d{4}-/)
  assert.strictEqual(lines.length, 1); assert.match(lines[0], /pm2 set pm2-eventsapi:token/)
  f.conf.token = 't2' // what a restart with `pm2 set pm2-eventsapi:token` amounts to
  await drain(f)
  const sent = srv.received.filter((r) => r.token === 'Bearer t2').flatMap((r) => r.ids)
  assert.deepStrictEqual(sent, Array.from({ length: 10 }, (_, i) => `id-${i}`))
  assert.strictEqual(f.auth, 'ok'); assert.strictEqual(f.stats.sent, 10)
  srv.close()
})

test('a batch too large is split; an event refused on its own is dropped and counted', async () => {
  const srv = await server((events, req, res) => {
    if (events.length > 3) { res.writeHead(413); res.end('{}'); return }
    if (events.some((e) => e.id === 'id-7')) { res.writeHead(400); res.end('{}'); return } // a body it cannot take
    ok(res, events)
  })
  const f = forwarder(srv.url, { max_batch: 10 })
  for (let i = 0; i < 10; i++) f.push(ev(i))
  await drain(f)
  const stored = srv.received.filter((r) => r.ids.length <= 3 && !r.ids.includes('id-7'))
  assert.deepStrictEqual(stored.flatMap((r) => r.ids).sort(), Array.from({ length: 10 }, (_, i) => `id-${i}`).filter((id) => id !== 'id-7').sort())
  assert.strictEqual(f.stats.rejected, 1); assert.strictEqual(f.stats.dropped, 0); assert.strictEqual(f.queued, 0)
  srv.close()
})

test('draining a large backlog writes about what the spool holds, not a rewrite per batch', async () => {
  const srv = await server((events, req, res) => ok(res, events))
  const f = forwarder(srv.url, { max_batch: 500 })
  for (let i = 0; i < 30000; i++) f.queue.push(JSON.stringify(ev(i))) // as if restored from a spool
  for (const line of f.queue) f.spool.append(line)
  const spoolBytes = f.spool.size
  let written = 0
  const { writeFileSync } = fs
  fs.writeFileSync = (file, data, ...rest) => { written += Buffer.byteLength(data); return writeFileSync(file, data, ...rest) }
  try { await drain(f, 100) } finally { fs.writeFileSync = writeFileSync }
  assert.strictEqual(f.stats.sent, 30000)
  // A rewrite of the rest per batch would write ~ spoolBytes * 60 / 2; compaction writes < spoolBytes.
  assert.ok(written < spoolBytes, `${written} bytes written for a ${spoolBytes}-byte spool`)
  srv.close()
})

test('the spool gives back, after a crash, exactly what was not done with', async () => {
  const srv = await server((events, req, res) => ok(res, events))
  const f = forwarder(srv.url, { max_batch: 3 })
  for (let i = 0; i < 5; i++) f.push(ev(i))
  await f.flush() // one batch of 3 at a time: all 5 sent
  for (let i = 5; i < 8; i++) f.push(ev(i))
  fs.appendFileSync(f.spool.file(), '{"id":"torn') // the process died mid-write
  const again = new Forwarder(f.conf, f.spool.path, quiet)
  assert.deepStrictEqual(again.queue.map((l) => JSON.parse(l).id), ['id-5', 'id-6', 'id-7'])
  again.push(ev(8)) // appends after the torn line was dropped
  const third = new Forwarder(f.conf, f.spool.path, quiet)
  assert.deepStrictEqual(third.queue.map((l) => JSON.parse(l).id), ['id-5', 'id-6', 'id-7', 'id-8'])
  srv.close()
})

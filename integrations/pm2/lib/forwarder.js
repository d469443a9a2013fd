// Batches events and sends them to eventsapi: by size and time, gzip, retries with backoff
// (Retry-After honoured), a bounded queue, and a spool file so that what waits survives a
// stop, a crash, a service outage or a refused credential. Each event got its id when it was
// queued, so a retry after a lost answer stores nothing twice.
//
// What is never a reason to drop: a refused credential or address (401, 403, 404: kept and
// retried until `pm2 set pm2-eventsapi:token ...` fixes it, said in `pm2 show` as `auth`),
// a batch too large (413, or 400 for the batch as a whole: split in halves). Only an event the
// service refuses on its own is dropped, counted as `rejected`.
'use strict'
const http = require('http')
const https = require('https')
const zlib = require('zlib')
const { Spool } = require('./spool')

const REFUSED = new Set([401, 403, 404])
const SPLIT = new Set([400, 413])

class Forwarder {
  constructor (conf, spoolPath, log = console) {
    this.conf = conf
    this.log = log
    this.spool = new Spool(spoolPath)
    // Queued events as their NDJSON lines (sent as they are); `head` is the first not yet sent,
    // so taking a batch off the front costs nothing, whatever the backlog.
    this.queue = this.spool.restore()
    this.head = 0
    this.stats = { sent: 0, retried: 0, dropped: 0, rejected: 0 }
    this.round = null
    this.backoffUntil = 0
    this.failures = 0
    this.refusedSince = null
    this.refusalLogged = 0
    if (this.queue.length) this.log.info(`pm2-eventsapi: ${this.queue.length} events from the spool`)
  }

  get queued () { return this.queue.length - this.head }

  // What `pm2 show` says of the credential.
  get auth () {
    return this.refusedSince === null ? 'ok' : `refused since ${new Date(this.refusedSince).toISOString()}`
  }

  push (event) {
    if (!event) return
    const line = JSON.stringify(event)
    this.queue.push(line)
    this.spool.append(line)
    const over = this.queued - this.conf.max_queue
    if (over > 0) { // bounded: the oldest go, and are counted
      this._consume(over)
      this.stats.dropped += over
    }
    if (this.queued >= this.conf.max_batch) this.flush()
  }

  // The first n queued events are done with (sent, rejected or dropped).
  _consume (n) {
    this.spool.consume(this.queue.slice(this.head, this.head + n))
    this.head += n
    if (this.head > 1000 && this.head * 2 > this.queue.length) { // amortised: O(1) per event
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
  }

  // One round of sending at a time: a call meanwhile gets the round under way. Never
  // rejects: called from timers and the bus, where a rejection would go unhandled.
  flush () {
    if (!this.round) this.round = this._flush().finally(() => { this.round = null })
    return this.round
  }

  async _flush () {
    if (!this.queued || Date.now() < this.backoffUntil) return
    try {
      let size = this.conf.max_batch
      while (this.queued && Date.now() >= this.backoffUntil) {
        const batch = this.queue.slice(this.head, this.head + size)
        const outcome = await this._send(batch)
        if (outcome === 'retry') break
        if (outcome === 'split') {
          if (batch.length > 1) { size = Math.ceil(batch.length / 2); continue }
          this.log.error(`pm2-eventsapi: an event was refused on its own and dropped: ${batch[0].slice(0, 200)}`)
          this.stats.rejected += 1
        }
        this._consume(batch.length)
        size = this.conf.max_batch
      }
    } catch (err) {
      this.log.error(`pm2-eventsapi: flush failed: ${err && err.message}`)
    }
  }

  _send (batch) {
    const url = new URL(`/api/bucket/${encodeURIComponent(this.conf.bucket)}/data/events/ingest`, this.conf.url)
    const body = zlib.gzipSync('[' + batch.join(',') + ']')
    const client = url.protocol === 'https:' ? https : http
    return new Promise((resolve) => {
      let settled = false
      const settle = (outcome) => {
        if (settled) return
        settled = true
        clearTimeout(deadline)
        resolve(outcome)
      }
      // The whole exchange, body included: a service that stops mid-answer is a failed send.
      const deadline = setTimeout(() => {
        req.destroy(new Error('no complete answer in time'))
      }, this.conf.timeout_ms || 30000)
      const req = client.request(url, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${this.conf.token}`,
          'Content-Type': 'application/json',
          'Content-Encoding': 'gzip',
          'Content-Length': body.length
        }
      }, (res) => {
        const chunks = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => settle(this._outcome(res, Buffer.concat(chunks).toString(), batch)))
        res.on('error', (err) => settle(this._retry(`answer cut off: ${err.message}`, null)))
        res.on('close', () => { if (!res.complete) settle(this._retry('answer cut off', null)) })
      })
      req.on('error', (err) => settle(this._retry(`network: ${err.message}`, null)))
      req.end(body)
    })
  }

  _outcome (res, text, batch) {
    const status = res.statusCode
    if (status === 200) {
      let answer
      try { answer = JSON.parse(text) } catch (e) { return this._retry('unreadable answer', null) }
      const rejected = Array.isArray(answer.rejected) ? answer.rejected : []
      for (const r of rejected) this.log.error(`pm2-eventsapi: event rejected: ${r.error}`)
      this.stats.rejected += rejected.length
      this.stats.sent += batch.length - rejected.length
      this.failures = 0
      if (this.refusedSince !== null) {
        this.log.info('pm2-eventsapi: the credential is accepted again; sending what was kept')
        this.refusedSince = null
      }
      return 'done'
    }
    if (SPLIT.has(status)) return 'split'
    if (REFUSED.has(status)) {
      if (this.refusedSince === null) this.refusedSince = Date.now()
      const outcome = this._retry(null, res.headers['retry-after'], 60000)
      if (Date.now() - this.refusalLogged >= 60000) { // loud, but a line a minute
        this.refusalLogged = Date.now()
        this.log.error(
          `pm2-eventsapi: eventsapi refused the credential or address (${status}: ${text.slice(0, 200)}) ` +
          `since ${new Date(this.refusedSince).toISOString()}; ${this.queued} events kept in the spool. ` +
          'Set a working one: pm2 set pm2-eventsapi:token <key> (eventsapi keys create)')
      }
      return outcome
    }
    return this._retry(`eventsapi answered ${status}`, res.headers['retry-after'])
  }

  _retry (why, retryAfter, cap = 30000) {
    this.failures += 1
    this.stats.retried += 1
    const backoff = Math.min(cap, 500 * 2 ** Math.min(this.failures, 7)) * (0.5 + Math.random() / 2)
    const told = Number(retryAfter) * 1000
    this.backoffUntil = Date.now() + (told > 0 ? Math.max(told, backoff / 4) : backoff)
    if (why) {
      this.log.warn(`pm2-eventsapi: ${why}; ${this.queued} events wait, retry in ${Math.round((this.backoffUntil - Date.now()) / 1000)} s`)
    }
    return 'retry'
  }
}

module.exports = { Forwarder }

// Batches events and sends them to eventsapi: by size and time, gzip, retries with backoff
// (Retry-After honoured), a bounded queue, and a spool file so that what waits survives a
// stop, a crash or a service outage. Each event got its id when it was queued, so a retry
// after a lost answer stores nothing twice.
'use strict'
const fs = require('fs')
const http = require('http')
const https = require('https')
const zlib = require('zlib')

class Forwarder {
  constructor (conf, spoolPath, log = console) {
    this.conf = conf
    this.spoolPath = spoolPath
    this.log = log
    this.queue = []
    this.stats = { sent: 0, retried: 0, dropped: 0, rejected: 0 }
    this.sending = false
    this.backoffUntil = 0
    this.failures = 0
    this._restore()
  }

  get queued () { return this.queue.length }

  // Events written by a previous run that never got an answer are sent first.
  _restore () {
    let text = ''
    try { text = fs.readFileSync(this.spoolPath, 'utf8') } catch (e) { return }
    for (const line of text.split('\n')) {
      if (!line) continue
      try { this.queue.push(JSON.parse(line)) } catch (e) { /* a torn last line: skip it */ }
    }
    if (this.queue.length) this.log.info(`pm2-eventsapi: ${this.queue.length} events from the spool`)
  }

  push (event) {
    if (!event) return
    this.queue.push(event)
    fs.appendFileSync(this.spoolPath, JSON.stringify(event) + '\n')
    if (this.queue.length > this.conf.max_queue) { // bounded: the oldest go, and are counted
      const over = this.queue.length - this.conf.max_queue
      this.queue.splice(0, over)
      this.stats.dropped += over
      this._rewriteSpool()
    }
    if (this.queue.length >= this.conf.max_batch) this.flush()
  }

  _rewriteSpool () {
    const tmp = this.spoolPath + '.tmp'
    fs.writeFileSync(tmp, this.queue.map((e) => JSON.stringify(e) + '\n').join(''))
    fs.renameSync(tmp, this.spoolPath)
  }

  async flush () {
    if (this.sending || !this.queue.length || Date.now() < this.backoffUntil) return
    this.sending = true
    try {
      while (this.queue.length && Date.now() >= this.backoffUntil) {
        const batch = this.queue.slice(0, this.conf.max_batch)
        const outcome = await this._send(batch)
        if (outcome === 'retry') break
        this.queue.splice(0, batch.length)
        this._rewriteSpool()
      }
    } finally {
      this.sending = false
    }
  }

  _send (batch) {
    const url = new URL(`/api/bucket/${encodeURIComponent(this.conf.bucket)}/data/events/ingest`, this.conf.url)
    const body = zlib.gzipSync(JSON.stringify(batch))
    const client = url.protocol === 'https:' ? https : http
    return new Promise((resolve) => {
      const req = client.request(url, {
        method: 'POST',
        timeout: 30000,
        headers: {
          Authorization: `Bearer ${this.conf.token}`,
          'Content-Type': 'application/json',
          'Content-Encoding': 'gzip',
          'Content-Length': body.length
        }
      }, (res) => {
        const chunks = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => resolve(this._outcome(res, Buffer.concat(chunks).toString(), batch)))
      })
      req.on('timeout', () => req.destroy(new Error('timed out')))
      req.on('error', (err) => resolve(this._retry(`network: ${err.message}`, null)))
      req.end(body)
    })
  }

  _outcome (res, text, batch) {
    if (res.statusCode === 200) {
      let answer = {}
      try { answer = JSON.parse(text) } catch (e) { /* counted as sent below */ }
      const rejected = Array.isArray(answer.rejected) ? answer.rejected : []
      for (const r of rejected) this.log.error(`pm2-eventsapi: event rejected: ${r.error}`)
      this.stats.rejected += rejected.length
      this.stats.sent += batch.length - rejected.length
      this.failures = 0
      return 'done'
    }
    if (res.statusCode === 429 || res.statusCode >= 500 || res.statusCode === 408) {
      return this._retry(`eventsapi answered ${res.statusCode}`, res.headers['retry-after'])
    }
    // 400, 401, 403, 404, 413: sending it again cannot succeed.
    this.log.error(`pm2-eventsapi: batch of ${batch.length} refused (${res.statusCode}): ${text.slice(0, 300)}`)
    this.stats.dropped += batch.length
    return 'done'
  }

  _retry (why, retryAfter) {
    this.failures += 1
    this.stats.retried += 1
    const backoff = Math.min(30000, 500 * 2 ** Math.min(this.failures, 6)) * (0.5 + Math.random() / 2)
    const told = Number(retryAfter) * 1000
    this.backoffUntil = Date.now() + (told > 0 ? Math.max(told, backoff / 4) : backoff)
    this.log.warn(`pm2-eventsapi: ${why}; ${this.queue.length} events wait, retry in ${Math.round((this.backoffUntil - Date.now()) / 1000)} s`)
    return 'retry'
  }
}

module.exports = { Forwarder }

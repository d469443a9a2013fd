// The spool: every queued event as a line of an append-only NDJSON file, and a small state
// file saying how many bytes at its start are done with (sent, rejected or dropped). Sending a
// batch appends nothing and rewrites only the state, so its cost does not grow with the
// backlog; the file is compacted (what is left copied to a new file) once the part done with
// is over half of it and over COMPACT_BYTES, which costs O(1) per event over time.
//
// Crash safety: the state names the file (its generation) and is replaced atomically (write,
// then rename), so a crash at any point leaves either the old file and state or the new ones.
'use strict'
const fs = require('fs')

const COMPACT_BYTES = 1 << 20

class Spool {
  constructor (path) {
    this.path = path
    this.statePath = path + '.state'
    this.gen = 0
    this.offset = 0
    this.size = 0
  }

  file (gen = this.gen) { return gen === 0 ? this.path : `${this.path}.${gen}` }

  // The lines not yet done with, from the last run; a torn last line (a crash mid-write) is left out.
  restore () {
    try { Object.assign(this, JSON.parse(fs.readFileSync(this.statePath, 'utf8'))) } catch (e) { /* first run */ }
    let data = Buffer.alloc(0)
    try { data = fs.readFileSync(this.file()) } catch (e) { this.offset = 0 }
    this.size = data.length
    const text = data.subarray(Math.min(this.offset, data.length)).toString('utf8')
    const lines = text.split('\n')
    const torn = lines.pop() !== '' // the text after the last newline
    const good = lines.filter((l) => { try { JSON.parse(l); return true } catch (e) { return false } })
    if (torn || good.length !== lines.length) this._rewrite(good)
    return good
  }

  append (line) {
    fs.appendFileSync(this.file(), line + '\n')
    this.size += Buffer.byteLength(line) + 1
  }

  // The lines at the front are done with.
  consume (lines) {
    for (const l of lines) this.offset += Buffer.byteLength(l) + 1
    if (this.offset > COMPACT_BYTES && this.offset * 2 > this.size) {
      const rest = fs.readFileSync(this.file()).subarray(this.offset).toString('utf8')
      this._rewrite(rest ? rest.slice(0, -1).split('\n') : [])
    } else {
      this._saveState()
    }
  }

  _rewrite (lines) {
    const old = this.file()
    const gen = this.gen + 1
    const body = lines.map((l) => l + '\n').join('')
    fs.writeFileSync(this.file(gen), body)
    Object.assign(this, { gen, offset: 0, size: Buffer.byteLength(body) })
    this._saveState()
    try { fs.unlinkSync(old) } catch (e) { /* already gone */ }
  }

  _saveState () {
    const tmp = this.statePath + '.tmp'
    fs.writeFileSync(tmp, JSON.stringify({ gen: this.gen, offset: this.offset }))
    fs.renameSync(tmp, this.statePath)
  }
}

module.exports = { Spool, COMPACT_BYTES }

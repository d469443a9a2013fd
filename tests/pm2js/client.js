// Drives eventsapi with PM2's own API client, as a PM2 Plus dashboard does: only a base URL
// and a token. Prints what each call answered as JSON. Used by tests/test_pm2_client.py.
'use strict'
const Keymetrics = require('@pm2/js-api')

const [base, token, bucket, eventName] = process.argv.slice(2)

async function main () {
  const km = new Keymetrics({ services: { API: base, OAUTH: base } })
  km.use('standalone', { access_token: token, refresh_token: 'not-used' })
  const events = km.data.events
  const day = 24 * 3600 * 1000
  const out = {}
  out.retrieve = (await events.retrieve(bucket, { event_name: eventName, limit: 10 })).data
  out.retrieveDated = (await events.retrieve(bucket, {
    event_name: eventName, start: new Date(Date.now() - day), end: new Date(Date.now() + 1000)
  })).data
  out.histogram = (await events.retrieveHistogram(bucket, { event_name: eventName, days: 1, interval: 'hour' })).data
  out.metadatas = (await events.retrieveMetadatas(bucket)).data
  out.bucket = (await km.bucket.retrieve(bucket)).data
  out.deleteAll = (await events.deleteAll(bucket)).data
  out.after = (await events.retrieveMetadatas(bucket)).data
  process.stdout.write(JSON.stringify(out))
  process.exit(0)
}

main().catch((err) => {
  const answer = err && err.response ? `${err.response.status} ${JSON.stringify(err.response.data)}` : err
  console.error('pm2 client failed:', answer)
  process.exit(1)
})

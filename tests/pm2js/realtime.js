// Subscribes to a bucket's realtime feed with PM2's own API client, as a PM2 Plus dashboard
// does, prints "ready" once listening, then prints every human:event packet it receives as
// one JSON line: {"server": ..., "events": [...]}. Exits after `count` events.
'use strict'
const Keymetrics = require('@pm2/js-api')

const [base, token, bucket, count] = process.argv.slice(2)

async function main () {
  const km = new Keymetrics({ services: { API: base, OAUTH: base } })
  km.use('standalone', { access_token: token, refresh_token: 'not-used' })
  await km.realtime.subscribe(bucket)
  let seen = 0
  km.realtime.on(`${bucket}:*:human:event`, function (events) {
    process.stdout.write(JSON.stringify({ server: this.event.split(':')[1], events }) + '\n')
    seen += events.length
    if (seen >= Number(count)) process.exit(0)
  })
  // The filter goes out with the listener; give it a moment to reach the service.
  setTimeout(() => process.stdout.write('ready\n'), 300)
}

main().catch((err) => {
  console.error('pm2 realtime failed:', err && err.message ? err.message : err)
  process.exit(1)
})

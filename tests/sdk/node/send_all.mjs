// Sends all six Segment call types with the official @segment/analytics-node SDK,
// unchanged except for host and write key, then prints one JSON line per event:
// {"call": ..., "messageId": <the SDK's own messageId>, "error": <delivery error or null>}.
// Usage: node send_all.mjs <host> <writeKey>
import { Analytics } from '@segment/analytics-node'

const [host, writeKey] = process.argv.slice(2)
if (!host || !writeKey) {
  console.error('usage: node send_all.mjs <host> <writeKey>')
  process.exit(2)
}

const analytics = new Analytics({ writeKey, host, flushInterval: 200, maxRetries: 2 })
const results = []
const pending = []

function call(name, params) {
  pending.push(new Promise((resolve) => {
    analytics[name](params, (err, ctx) => {
      results.push({
        call: name,
        messageId: ctx?.event?.messageId ?? null,
        error: err ? String(err.reason ?? err.message ?? err) : null,
      })
      resolve()
    })
  }))
}

call('identify', { userId: 'sdk-user', traits: { email: 'sdk@example.com', plan: 'pro' } })
call('track', {
  userId: 'sdk-user', event: 'Order Completed', properties: { revenue: 42.5, sku: 'A-1' },
  timestamp: new Date('2021-03-04T05:06:07Z'),
})
call('page', { userId: 'sdk-user', name: 'Home', properties: { path: '/' } })
call('screen', { anonymousId: 'sdk-anon', name: 'Settings', properties: { tab: 'privacy' } })
call('group', { userId: 'sdk-user', groupId: 'sdk-group', traits: { name: 'Acme' } })
call('alias', { userId: 'sdk-user', previousId: 'sdk-anon' })

await Promise.all(pending)
await analytics.closeAndFlush({ timeout: 10000 })
for (const r of results) console.log(JSON.stringify(r))
process.exit(results.every((r) => r.error === null) ? 0 : 1)

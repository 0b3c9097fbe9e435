// Sends one person's calls with the official @segment/analytics-node SDK, unchanged except
// for host and write key: an identify, then <count> tracks by user id and <count> by
// anonymous id. Prints one JSON line per call:
// {"call": ..., "messageId": <the SDK's own messageId>, "error": <delivery error or null>}.
// Usage: node send_person.mjs <host> <writeKey> <userId> <anonymousId> <count> <label>
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, userId, anonymousId, count, label] = process.argv.slice(2)
if (!host || !writeKey || !userId || !anonymousId || !count) {
  console.error('usage: node send_person.mjs <host> <writeKey> <userId> <anonymousId> <count> <label>')
  process.exit(2)
}

const analytics = new Analytics({ writeKey, host, flushInterval: 100, maxRetries: 2 })
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

call('identify', { userId, anonymousId, traits: { plan: label } })
for (let i = 0; i < Number(count); i++) {
  call('track', { userId, event: 'Order Completed', properties: { n: i, label } })
  call('track', { anonymousId, event: 'Viewed', properties: { n: i, label } })
}

await Promise.all(pending)
await analytics.closeAndFlush({ timeout: 10000 })
for (const r of results) console.log(JSON.stringify(r))
process.exit(results.every((r) => r.error === null) ? 0 : 1)

// A webhook receiver (scripts/lib/webhook-receiver.ts, answering 204 at once) in a process of its own, for
// scripts/bench/webhooks.ts: in the load generator's process, thousands of deliveries a second would
// delay the clock that times the writes. Started with an IPC channel: it sends { url } once listening;
// to 'take' it answers with the deliveries received since the last 'take', as [appointment id, Date.now()
// at arrival] pairs, and forgets them. It exits when the channel closes.
import { startReceiver } from '../lib/webhook-receiver.js';

const receiver = await startReceiver();
process.on('message', (message) => {
  if (message !== 'take') return;
  const taken = receiver.requests.splice(0).map((r) => {
    const id = (JSON.parse(r.body) as { data?: { id?: string } }).data?.id ?? '';
    return [id, r.receivedAt] as const;
  });
  process.send!(taken);
});
process.on('disconnect', () => void receiver.close().then(() => process.exit(0)));
process.send!({ url: receiver.url });

import type { Outcome } from './faults.js';
import type { ReceivedRequest } from './webhook-receiver.js';

// What the receivers got against what the service acknowledged (test/webhook-load.test.ts,
// test/webhook-faults.test.ts, scripts/check-webhooks.ts; no vitest here). An event is named by its
// change: `<appointment id> <version> <type>`.

/** The events the write answers promise: 201 a creation, 200 `updated` an update; nothing else makes one. */
export function promisedEvents(outcomes: Outcome[]): Set<string> {
  const events = new Set<string>();
  for (const o of outcomes) {
    const body = o.body as { status?: string; appointment?: { id: string; version: number } } | undefined;
    if (o.status === 201 && body?.appointment) events.add(`${body.appointment.id} ${body.appointment.version} upsert`);
    if (o.status === 200 && body?.status === 'updated' && body.appointment)
      events.add(`${body.appointment.id} ${body.appointment.version} upsert`);
  }
  return events;
}

export interface DeliveryCheck {
  /** Requests received, and distinct events among them (by webhook-id). */
  requests: number;
  events: number;
  /** Promised events never answered 2xx by the receiver. */
  lost: string[];
  /** Webhook-ids received again after the receiver had answered one of them 2xx. */
  duplicates: string[];
  /** Webhook-ids received again only after failed attempts (allowed). */
  retried: number;
  /** Two webhook-ids for one change (never allowed: one message per change and endpoint). */
  doubleMade: string[];
  /** From the change's recordedAt to the first 2xx answer, ms, sorted. */
  delaysMs: number[];
}

export function checkDeliveries(promised: Set<string>, requests: ReceivedRequest[]): DeliveryCheck {
  const idOfEvent = new Map<string, string>();
  const doubleMade: string[] = [];
  const okAt = new Map<string, number>();
  const duplicates: string[] = [];
  let retried = 0;
  const seen = new Set<string>();
  const delaysMs: number[] = [];
  for (const q of [...requests].sort((a, b) => a.receivedAt - b.receivedAt)) {
    const body = JSON.parse(q.body) as { data: { id: string; version: number; type: string; recordedAt: string } };
    const event = `${body.data.id} ${body.data.version} ${body.data.type}`;
    const known = idOfEvent.get(event);
    if (known === undefined) idOfEvent.set(event, q.id);
    else if (known !== q.id) doubleMade.push(event);
    if (seen.has(q.id)) {
      if (okAt.has(q.id)) duplicates.push(q.id);
      else retried++;
    }
    seen.add(q.id);
    if (q.status >= 200 && q.status < 300 && !okAt.has(q.id)) {
      okAt.set(q.id, q.answeredAt ?? q.receivedAt);
      delaysMs.push((q.answeredAt ?? q.receivedAt) - Date.parse(body.data.recordedAt));
    }
  }
  const delivered = new Set([...idOfEvent].filter(([, id]) => okAt.has(id)).map(([event]) => event));
  return {
    requests: requests.length,
    events: seen.size,
    lost: [...promised].filter((e) => !delivered.has(e)),
    duplicates,
    retried,
    doubleMade,
    delaysMs: delaysMs.sort((a, b) => a - b),
  };
}

/** The p-th percentile of sorted values. */
export const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

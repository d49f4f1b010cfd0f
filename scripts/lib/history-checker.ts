import { Agent } from 'undici';
import { appointmentEtag } from '../../src/etags.js';
import type { HistoryEntry } from '../../src/schemas/appointments.js';
import { httpRequest } from './http.js';
import { overlappingPairs, overlaps } from './overlaps.js';
import { seededRandom, shuffle } from './random.js';
import { sleep, systemTimeText, systemTimeUs } from './time.js';

// Used by test/history-checker.test.ts and scripts/check-history.ts (no vitest here).
//
// A Jepsen-style history checker for the appointments API: a seeded workload of creates, updates,
// deletes and reads from many concurrent clients, a recorder of every request with the instants it was
// sent and answered, and a checker of the whole recorded history against the service's rules.
//
// Client instants come from Date.now() (wall clock, milliseconds); the service's validFrom / validTo /
// recordedAt come from PostgreSQL's clock_timestamp() (wall clock, microseconds) on the same machine.
// The two read the same system clock, so they are comparable up to the client's millisecond
// truncation; TOLERANCE_US widens every client window by 2 ms on each side to absorb that and the
// rounding of the server's text form. It is a tolerance on windows only: the checks on server times
// alone (tiling, snapshots) are exact.
export const TOLERANCE_US = 2_000;

export type Op =
  | {
      kind: 'write';
      orgId: string;
      id: string;
      start: string;
      end: string;
      createdAt: string;
      updatedAt: string;
      /** Sent as If-Match: an ETag the client saw for the id (or one it never saw), or `*`. */
      ifMatch?: string;
      /** Sent as If-None-Match: `*`, create only. */
      ifNoneMatch?: '*';
    }
  | { kind: 'delete'; orgId: string; id: string; ifMatch?: string }
  | { kind: 'read'; orgId: string; id: string }
  | { kind: 'list'; orgId: string };

export type WriteOp = Extract<Op, { kind: 'write' }>;

/**
 * POST /api/appointments/batch: recorded as one event per item, whose answer is the item's result
 * (its status as a single POST's: 201 created, 200 updated/unchanged/stale, or the rejection's).
 */
export interface BatchOp {
  kind: 'batch';
  orgId: string;
  atomic: boolean;
  /** Each item as a single write (`ifMatch` in the item, never If-None-Match). */
  items: Array<WriteOp & { condition?: Condition }>;
}

/** Where an event's item stood in its batch. */
export interface BatchPlace {
  /** The batch's number in the run, and the item's index in it. */
  batch: number;
  index: number;
  atomic: boolean;
  /**
   * An atomic batch refused at another item: this one was not written (status 424), or it was the
   * refused one, and the items before it, written in the transaction that was undone, are here (a
   * 409 may name one of them).
   */
  undone?: boolean;
  earlier?: WriteOp[];
}

export interface HistoryEvent {
  /** Position in the recorded history (order of answers). */
  index: number;
  client: number;
  op: Op;
  /** Microseconds since the epoch, client clock. */
  sentAt: number;
  answeredAt: number;
  /** 0 when no answer came (network error): the effect is unknown. */
  status: number;
  /** The answer's JSON (or its text; the error's text when no answer came); read it through answerOf. */
  body: unknown;
  /** The answer's ETag header, when it has one (a DELETE's names the version it deleted). */
  etag?: string;
  /** A batch's item. */
  batch?: BatchPlace;
}

/** An appointment in an answer, as the checker reads it: the answers are what is checked, so no field is assumed. */
export type Served = Partial<{
  id: string;
  orgId: string;
  start: string;
  end: string;
  createdAt: string;
  updatedAt: string;
  version: number;
  recordedAt: string;
  deletedAt: string;
}>;

/** The fields of an answer the checker reads: a write's status and appointment, a read's appointment, an error. */
export interface AnswerFields extends Served {
  status?: string;
  appointment?: Served;
  code?: string;
  conflictsWith?: { id: string; start: string; end: string } | null;
}

/** The body as an object of answer fields; empty for a list, a text or nothing. */
export const answerOf = (body: unknown): AnswerFields =>
  typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as AnswerFields) : {};

/** One recorded version of an appointment, as GET /api/appointments/:id/history gives it. */
export interface Version {
  orgId: string;
  id: string;
  version: number;
  start: string;
  end: string;
  createdAt: string;
  updatedAt: string;
  /** Microseconds since the epoch, server clock. */
  validFrom: number;
  validTo: number | null;
  deleted: boolean;
}

export interface Anomaly {
  rule: string;
  message: string;
  /** The smallest set of recorded events and versions that shows the violation. */
  events: HistoryEvent[];
  versions: Version[];
  /** More of the excerpt, already readable (the feed checker's: what a consumer received). */
  lines?: string[];
}

export interface WorkloadOptions {
  seed: number;
  /** A prefix that keeps this run's orgs apart from anything else in the database. */
  orgPrefix: string;
  orgs?: number;
  idsPerOrg?: number;
  /** Conditional writes and deletes (If-Match, If-None-Match) among the others; true unless false. */
  conditional?: boolean;
  /** Batches (atomic and not) among the others; true unless false. */
  batches?: boolean;
}

export const orgIdsOf = (o: WorkloadOptions) => Array.from({ length: o.orgs ?? 3 }, (_, k) => `${o.orgPrefix}-o${k}`);
/**
 * The precondition a client puts on a write or delete, resolved when it is sent: the last ETag it saw
 * for the id (a tag that never matches when it saw none), any live version (`*`), or none live.
 */
export type Condition = 'last-seen' | 'any' | 'absent';

/** An ETag no version has: what a client sends when it has seen none. */
export const UNSEEN_ETAG = '"0-0"';

export const idsOf = (o: WorkloadOptions) => Array.from({ length: o.idsPerOrg ?? 6 }, (_, k) => `a${k}`);

const UPDATED_BASE = Date.UTC(2020, 5, 1);
const pad = (n: number) => String(n).padStart(2, '0');

/**
 * The operation stream of one client: a pure function of (seed, client), so a run is reproducible as a
 * set of per-client sequences; the interleaving between clients is left to the machine and is recorded.
 * A small space of ids, hour slots and updatedAt minutes makes overlaps, ties and stale writes common.
 */
export function clientOps(o: WorkloadOptions, client: number): () => (Op & { condition?: Condition }) | BatchOp {
  const random = seededRandom((o.seed ^ Math.imul(client + 1, 0x9e3779b1)) >>> 0);
  const orgs = orgIdsOf(o);
  const ids = idsOf(o);
  const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)]!;
  let n = 0;
  return () => {
    n++;
    const orgId = pick(orgs);
    const id = pick(ids);
    const r = random();
    // three writes in ten and one delete in three conditional, when the workload has them
    const c = random();
    const condition: { condition?: Condition } =
      o.conditional === false
        ? {}
        : r < 0.55
          ? c < 0.12
            ? { condition: 'last-seen' }
            : c < 0.22
              ? { condition: 'any' }
              : c < 0.3
                ? { condition: 'absent' }
                : {}
          : c < 0.33
            ? { condition: 'last-seen' }
            : {};
    const writeOf = (itemId: string): WriteOp => {
      const startHour = Math.floor(random() * 10);
      const hours = 1 + Math.floor(random() * 3);
      return {
        kind: 'write',
        orgId,
        id: itemId,
        start: `2030-01-01T${pad(startHour)}:00:00.000Z`,
        end: `2030-01-01T${pad(startHour + hours)}:${random() < 0.5 ? '00' : '30'}:00.000Z`,
        createdAt: `2020-01-0${1 + Math.floor(random() * 2)}T00:00:00.000Z`,
        // drifts forward with the client's step, with a spread wide enough for ties and late writes
        updatedAt: new Date(UPDATED_BASE + (n * 30 + Math.floor(random() * 4) * 30) * 1000).toISOString(),
      };
    };
    // one write in ten a batch of 2 to 4 items of distinct ids, half of them atomic
    if (r < 0.55 && o.batches !== false && c >= 0.9) {
      const size = 2 + Math.floor(random() * 3);
      const batchIds = shuffle(ids, random).slice(0, size);
      return {
        kind: 'batch',
        orgId,
        atomic: random() < 0.5,
        items: batchIds.map((itemId) => ({
          ...writeOf(itemId),
          ...(o.conditional !== false && random() < 0.2 ? { condition: 'last-seen' as const } : {}),
        })),
      };
    }
    if (r < 0.55) return { ...condition, ...writeOf(id) };
    if (r < 0.65) return { ...condition, kind: 'delete', orgId, id };
    if (r < 0.9) return { kind: 'read', orgId, id };
    return { kind: 'list', orgId };
  };
}

const nowUs = () => Date.now() * 1000;

async function send(agent: Agent, baseUrl: string, op: Op): Promise<{ status: number; body: unknown; etag?: string }> {
  const q = `?orgId=${encodeURIComponent(op.orgId)}`;
  const target =
    op.kind === 'write'
      ? '/api/appointments'
      : op.kind === 'list'
        ? `/api/appointments${q}&limit=1000`
        : `/api/appointments/${encodeURIComponent(op.id)}${q}`;
  const method = op.kind === 'write' ? 'POST' : op.kind === 'delete' ? 'DELETE' : 'GET';
  const { kind: _kind, ifMatch, ifNoneMatch, ...fields } = op as Op & { ifMatch?: string; ifNoneMatch?: string };
  const { status, body, headers } = await httpRequest(baseUrl, method, target, {
    json: op.kind === 'write' ? fields : undefined,
    headers: {
      ...(ifMatch === undefined ? {} : { 'if-match': ifMatch }),
      ...(ifNoneMatch === undefined ? {} : { 'if-none-match': ifNoneMatch }),
    },
    dispatcher: agent,
  });
  return typeof headers.etag === 'string' ? { status, body, etag: headers.etag } : { status, body };
}

/** The service's base URL, or per request the instance a client sends it to (several on one database). */
export type BaseUrl = string | ((client: number) => string);

const baseOf = (baseUrl: BaseUrl) => (typeof baseUrl === 'string' ? () => baseUrl : baseUrl);

/**
 * Runs `clients` concurrent clients, each sending its own seeded operation stream one request at a
 * time, until each has sent `opsPerClient` or `until` (ms since the epoch) has passed.
 */
export async function runWorkload(
  baseUrl: BaseUrl,
  o: WorkloadOptions & { clients: number; opsPerClient?: number; until?: number },
): Promise<HistoryEvent[]> {
  const base = baseOf(baseUrl);
  const agent = new Agent({ connections: o.clients, pipelining: 1 });
  const events: HistoryEvent[] = [];
  const client = async (c: number) => {
    const next = clientOps(o, c);
    // the last ETag this client was given for each id
    const seen = new Map<string, string>();
    for (
      let n = 0;
      (o.opsPerClient === undefined || n < o.opsPerClient) && (o.until === undefined || Date.now() < o.until);
      n++
    ) {
      const planned = next();
      if (planned.kind === 'batch') {
        await sendBatch(c, planned, seen);
        continue;
      }
      const { condition, ...rest } = planned;
      const op: Op = rest;
      if (op.kind === 'write' || op.kind === 'delete') {
        if (condition === 'last-seen') op.ifMatch = seen.get(key(op.orgId, op.id)) ?? UNSEEN_ETAG;
        else if (condition === 'any') op.ifMatch = '*';
        else if (condition === 'absent' && op.kind === 'write') op.ifNoneMatch = '*';
      }
      const sentAt = nowUs();
      let answer: { status: number; body: unknown; etag?: string };
      try {
        answer = await send(agent, base(c), op);
      } catch (error) {
        answer = { status: 0, body: String(error) };
      }
      events.push({ index: events.length, client: c, op, sentAt, answeredAt: nowUs(), ...answer });
      if (answer.etag !== undefined && 'id' in op && op.kind !== 'delete') seen.set(key(op.orgId, op.id), answer.etag);
    }
  };
  let batches = 0;
  const sendBatch = async (c: number, planned: BatchOp, seen: Map<string, string>) => {
    const batch = batches++;
    const items: WriteOp[] = planned.items.map(({ condition, ...item }) =>
      condition === 'last-seen' ? { ...item, ifMatch: seen.get(key(item.orgId, item.id)) ?? UNSEEN_ETAG } : item,
    );
    const sentAt = nowUs();
    let status: number;
    let body: unknown;
    try {
      const res = await httpRequest(base(c), 'POST', `/api/appointments/batch?atomic=${planned.atomic}`, {
        json: { appointments: items.map(({ kind: _kind, ...fields }) => fields) },
        dispatcher: agent,
      });
      ({ status, body } = res);
    } catch (error) {
      [status, body] = [0, String(error)];
    }
    const answeredAt = nowUs();
    const results = (answerOf(body) as { results?: unknown }).results;
    const refusedAt = (answerOf(body) as { index?: unknown }).index;
    items.forEach((op, index) => {
      const place: BatchPlace = { batch, index, atomic: planned.atomic };
      const event = { index: events.length, client: c, op, sentAt, answeredAt, batch: place };
      if (status === 200 && Array.isArray(results)) {
        const r = answerOf(results[index]) as AnswerFields & { error?: unknown; etag?: string };
        const etag = typeof r.etag === 'string' ? { etag: r.etag } : {};
        if (r.status === 'rejected') {
          const error = answerOf(r.error) as AnswerFields & { statusCode?: number };
          events.push({ ...event, status: Number(error.statusCode), body: error });
        } else events.push({ ...event, status: r.status === 'created' ? 201 : 200, body: r, ...etag });
        if (etag.etag !== undefined) seen.set(key(op.orgId, op.id), etag.etag);
      } else if (planned.atomic && (status === 409 || status === 412) && typeof refusedAt === 'number') {
        // the refused item answers as a single POST would; the others were not written
        if (index === refusedAt)
          events.push({ ...event, status, body, batch: { ...place, earlier: items.slice(0, index) } });
        else events.push({ ...event, status: 424, body: undefined, batch: { ...place, undone: true } });
      } else {
        // no answer, or the whole batch refused (503): every item as a single POST with that answer
        events.push({ ...event, status, body });
      }
    });
  };
  try {
    await Promise.all(Array.from({ length: o.clients }, (_, c) => client(c)));
  } finally {
    await agent.close();
  }
  return events;
}

export interface RecordedState {
  versions: Version[];
  /** Per org, the current appointments as GET /api/appointments lists them after the run. */
  finalState: Map<string, Served[]>;
}

/** The history of every id the workload touched, and the final calendars, read through the API. */
export const readRecordedState = (baseUrl: BaseUrl, o: WorkloadOptions) =>
  readStateOf(baseUrl, orgIdsOf(o), () => idsOf(o));

/** The history of the given ids and the final calendars of the given orgs (the fault scenarios' load). */
export async function readStateOf(
  baseUrl: BaseUrl,
  orgIds: string[],
  ids: (orgId: string) => string[],
): Promise<RecordedState> {
  const base = baseOf(baseUrl);
  const agent = new Agent({ connections: 8 });
  let reads = 0;
  // the answers of GET list and history; not JSON (or not a list) is an error. A 503 is asked again
  // after its Retry-After, as a client does: after a fault a pooled connection may still fail once.
  const get = async <T>(path: string) => {
    let res = await httpRequest<T[]>(base(reads++), 'GET', path, { dispatcher: agent });
    for (let retry = 0; res.status === 503 && retry < 5; retry++) {
      await sleep(Number(res.headers['retry-after'] ?? 1) * 1000);
      res = await httpRequest<T[]>(base(reads++), 'GET', path, { dispatcher: agent });
    }
    if (res.status === 200 && !Array.isArray(res.body)) throw new Error(`GET ${path}: not a list: ${res.text}`);
    return res;
  };
  try {
    const versions: Version[] = [];
    const finalState = new Map<string, Served[]>();
    for (const orgId of orgIds) {
      const list = await get<Served>(`/api/appointments?orgId=${orgId}&limit=1000`);
      if (list.status !== 200) throw new Error(`listing ${orgId}: ${list.status}`);
      finalState.set(orgId, list.body);
      for (const id of ids(orgId)) {
        const res = await get<HistoryEntry>(`/api/appointments/${id}/history?orgId=${orgId}`);
        if (res.status === 404) continue;
        if (res.status !== 200) throw new Error(`history of ${orgId}/${id}: ${res.status}`);
        for (const h of res.body) {
          versions.push({
            orgId,
            id,
            version: h.version,
            start: h.start,
            end: h.end,
            createdAt: h.createdAt,
            updatedAt: h.updatedAt,
            validFrom: systemTimeUs(h.validFrom),
            validTo: h.validTo === null ? null : systemTimeUs(h.validTo),
            deleted: h.deleted,
          });
        }
      }
    }
    return { versions, finalState };
  } finally {
    await agent.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// The checker

interface Content {
  start: string;
  end: string;
  createdAt: string;
  updatedAt: string;
}

export const key = (orgId: string, id: string) => `${orgId}\u0000${id}`;
/** Same times; an answer missing one differs from anything. */
export const sameContent = (a: Partial<Content>, b: Partial<Content>) =>
  a.start === b.start && a.end === b.end && a.createdAt === b.createdAt && a.updatedAt === b.updatedAt;
/** The write's (updatedAt, start, end, createdAt) is greater: the tie-break of the service. */
const beats = (a: Content, b: Content) => {
  const t = (x: Content) => [x.updatedAt, x.start, x.end, x.createdAt];
  const [x, y] = [t(a), t(b)];
  for (let i = 0; i < 4; i++) if (x[i] !== y[i]) return x[i]! > y[i]!;
  return false;
};

/**
 * The version each 204 delete ended: the one its ETag names when it has one; else, as the deletes of
 * one id may overlap in time, a matching of the deletes' windows to the deleted versions' ends (by
 * window end, each to the earliest end not yet taken: the greedy that finds one whenever one exists).
 */
export function deletedVersions(events: HistoryEvent[], versions: Version[]): Map<HistoryEvent, Version> {
  const ended = new Map<HistoryEvent, Version>();
  const taken = new Set<Version>();
  const deletes = events
    .filter((e) => e.op.kind === 'delete' && e.status === 204)
    .sort((a, b) => a.answeredAt - b.answeredAt);
  const deletedOf = (e: HistoryEvent) =>
    versions
      .filter((v) => v.deleted && v.orgId === e.op.orgId && 'id' in e.op && v.id === e.op.id)
      .sort((a, b) => a.validTo! - b.validTo!);
  for (const e of deletes) {
    if (e.etag === undefined) continue;
    const v = deletedOf(e).find((x) => etagOfVersion(x) === e.etag);
    if (v) {
      ended.set(e, v);
      taken.add(v);
    }
  }
  for (const e of deletes) {
    if (e.etag !== undefined) continue;
    const v = deletedOf(e).find(
      (x) => !taken.has(x) && x.validTo! >= e.sentAt - TOLERANCE_US && x.validTo! <= e.answeredAt + TOLERANCE_US,
    );
    if (v) {
      ended.set(e, v);
      taken.add(v);
    }
  }
  return ended;
}

/** The ETag the service gives a version (src/etags.ts). */
export const etagOfVersion = (v: Version) =>
  appointmentEtag({ version: v.version, recordedAt: systemTimeText(v.validFrom) });

/** Checks a recorded history; returns every anomaly found (none for a correct service). */
export function checkHistory(events: HistoryEvent[], state: RecordedState): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const report = (rule: string, message: string, ev: HistoryEvent[], versions: Version[]) =>
    anomalies.push({ rule, message, events: ev, versions });

  const byId = new Map<string, Version[]>();
  for (const v of state.versions) {
    const list = byId.get(key(v.orgId, v.id)) ?? [];
    list.push(v);
    byId.set(key(v.orgId, v.id), list);
  }
  for (const list of byId.values()) list.sort((a, b) => a.version - b.version);
  const versionsOf = (orgId: string, id: string) => byId.get(key(orgId, id)) ?? [];

  // A version's validFrom / validTo are clock_timestamp() readings taken inside the writing
  // transaction, before its commit; other requests see the change only at the commit, which comes
  // before the writer's answer. So a version stays visible to readers until the answer of the request
  // that ended it (a version of unknown end: indefinitely), and is surely visible only from the answer
  // of the request that wrote it: the windows of linearizability, not the recorded instants.
  /** The version an acknowledged delete ended: a deleted one whose period ends in the request's window. */
  const endedBy = (list: Version[], e: HistoryEvent) =>
    list.find(
      (x) =>
        x.deleted &&
        x.validTo !== null &&
        x.validTo >= e.sentAt - TOLERANCE_US &&
        x.validTo <= e.answeredAt + TOLERANCE_US,
    );
  const writerOf = new Map<Version, HistoryEvent>();
  const enderAnsweredAt = new Map<Version, number>();
  for (const e of events) {
    const answer = answerOf(e.body);
    if (e.op.kind === 'write' && (answer.status === 'created' || answer.status === 'updated')) {
      const v = versionsOf(e.op.orgId, e.op.id).find((x) => x.version === answer.appointment?.version);
      if (v && !writerOf.has(v)) writerOf.set(v, e);
    } else if (e.op.kind === 'delete' && e.status === 204) {
      const v = endedBy(versionsOf(e.op.orgId, e.op.id), e);
      if (v) enderAnsweredAt.set(v, e.answeredAt);
    }
  }
  for (const list of byId.values()) {
    list.forEach((v, i) => {
      const next = list[i + 1];
      if (!v.deleted && next) enderAnsweredAt.set(v, writerOf.get(next)?.answeredAt ?? Infinity);
    });
  }
  /** The version may have been what a request saw at some instant of its window. */
  const visibleDuring = (v: Version, e: HistoryEvent) =>
    v.validFrom <= e.answeredAt + TOLERANCE_US &&
    (v.validTo === null || Math.max(v.validTo, enderAnsweredAt.get(v) ?? Infinity) > e.sentAt - TOLERANCE_US);
  /** The id was surely visible throughout the request's window: a 404 would be wrong. */
  const surelyExisted = (list: Version[], e: HistoryEvent) => {
    let chainStart: number | null = null;
    for (const v of list) {
      chainStart ??= writerOf.get(v)?.answeredAt ?? Infinity;
      const end = v.deleted ? v.validTo! : v.validTo === null ? Infinity : null;
      if (end !== null) {
        if (chainStart <= e.sentAt - TOLERANCE_US && end >= e.answeredAt + TOLERANCE_US) return true;
        chainStart = null;
      }
    }
    return false;
  };

  /** A 404 is wrong when the id surely existed throughout the request's window. */
  const notFoundWhileExisting = (what: string, op: Op & { id: string }, list: Version[], e: HistoryEvent) => {
    if (surelyExisted(list, e))
      report(
        'wrong-not-found',
        `${what} of ${op.orgId}/${op.id} answered 404 while it existed throughout`,
        [e],
        near(list, e),
      );
  };

  const eventsById = new Map<string, HistoryEvent[]>();
  for (const e of events) {
    if (e.op.kind !== 'write' && e.op.kind !== 'delete') continue;
    const k = key(e.op.orgId, e.op.id);
    const list = eventsById.get(k);
    if (list) list.push(e);
    else eventsById.set(k, [e]);
  }
  const acknowledged = new Map<Version, HistoryEvent[]>();

  for (const e of events) {
    const op = e.op;
    const answer = answerOf(e.body);
    // an item of an atomic batch refused at another: nothing to judge but that it was not written (below)
    if (e.batch?.undone) continue;
    if (e.status >= 500) report('server-error', `${e.status} answered`, [e], []);
    if (op.kind === 'write') {
      const a = answer.appointment;
      if ((e.status === 201 || e.status === 200) && a) {
        const v = versionsOf(op.orgId, op.id).find((x) => x.version === a.version);
        const status = answer.status;
        if (status === 'created' || status === 'updated') {
          if ((status === 'created') !== (e.status === 201))
            report('wrong-status', `${status} answered with HTTP ${e.status}`, [e], []);
          if (!v) {
            report(
              'lost-write',
              `acknowledged version ${a.version} of ${op.orgId}/${op.id} is not in the history`,
              [e],
              versionsOf(op.orgId, op.id),
            );
            continue;
          }
          acknowledged.set(v, [...(acknowledged.get(v) ?? []), e]);
          if (!sameContent(v, op) || !sameContent(a, op)) {
            report(
              'wrong-content',
              `version ${a.version} of ${op.orgId}/${op.id} differs from what was acknowledged`,
              [e],
              [v],
            );
          }
          if (a.recordedAt === undefined || systemTimeUs(a.recordedAt) !== v.validFrom)
            report('wrong-content', `recordedAt ${a.recordedAt} is not the version's validFrom`, [e], [v]);
          if (v.validFrom < e.sentAt - TOLERANCE_US || v.validFrom > e.answeredAt + TOLERANCE_US) {
            report(
              'outside-window',
              `version ${a.version} of ${op.orgId}/${op.id} began outside its request's send-answer window`,
              [e],
              [v],
            );
          }
        } else if (status === 'stale') {
          // the answer shows the stored version; it must have been current in the window and win over the request
          const shown = versionsOf(op.orgId, op.id);
          const w = shown.find((x) => x.version === a.version);
          const next = w && shown.find((x) => x.version === w.version + 1);
          const tombstone = a.deletedAt !== undefined;
          const ok =
            w !== undefined &&
            (tombstone
              ? w.deleted &&
                w.updatedAt >= op.updatedAt &&
                w.validTo! <= e.answeredAt + TOLERANCE_US &&
                (!next || next.validFrom > e.sentAt - TOLERANCE_US)
              : visibleDuring(w, e) && beats(w, op) && sameContent(w, a));
          if (!ok)
            report(
              'stale-without-winner',
              `stale answer for ${op.orgId}/${op.id} with no newer version current in its window`,
              [e],
              w ? [w] : shown,
            );
        } else if (status === 'unchanged') {
          const w = versionsOf(op.orgId, op.id).find((x) => x.version === a.version);
          if (!w || !visibleDuring(w, e) || !sameContent(w, op))
            report(
              'unchanged-without-version',
              `unchanged answer for ${op.orgId}/${op.id} with no equal version current in its window`,
              [e],
              w ? [w] : [],
            );
        }
      } else if (e.status === 409) {
        const c = answer.conflictsWith;
        const candidates = c
          ? versionsOf(op.orgId, c.id).filter((v) => v.start === c.start && v.end === c.end)
          : state.versions.filter((v) => v.orgId === op.orgId && v.id !== op.id);
        const blocker = candidates.find((v) => v.id !== op.id && overlaps(v, op) && visibleDuring(v, e));
        // in an atomic batch, an item before it in the transaction that was undone
        const earlier = (e.batch?.earlier ?? []).find(
          (x) => x.id !== op.id && overlaps(x, op) && (!c || (x.id === c.id && x.start === c.start && x.end === c.end)),
        );
        if (answer.code !== 'APPOINTMENT_OVERLAP' || (!blocker && !earlier)) {
          report(
            'conflict-without-blocker',
            `409 for ${op.orgId}/${op.id} [${op.start}, ${op.end}) naming ${c ? `${c.id} [${c.start}, ${c.end})` : 'null'}, which did not overlap it in its window`,
            [e],
            near(
              candidates.filter((v) => v.id !== op.id && overlaps(v, op)),
              e,
            ),
          );
        }
      } else if (e.status !== 0 && e.status !== 503 && e.status !== 412) {
        report('unexpected-answer', `write answered ${e.status}`, [e], []);
      }
    } else if (op.kind === 'delete') {
      const list = versionsOf(op.orgId, op.id);
      if (e.status === 204) {
        const v = endedBy(list, e);
        if (!v)
          report(
            'lost-delete',
            `acknowledged delete of ${op.orgId}/${op.id} ended no version in its window`,
            [e],
            near(list, e),
          );
        else acknowledged.set(v, acknowledged.get(v) ?? []);
      } else if (e.status === 404) {
        notFoundWhileExisting('delete', op, list, e);
      } else if (e.status !== 0 && e.status !== 503 && e.status !== 412)
        report('unexpected-answer', `delete answered ${e.status}`, [e], []);
    } else if (op.kind === 'read') {
      const list = versionsOf(op.orgId, op.id);
      if (e.status === 200) {
        const w = list.find((x) => x.version === answer.version);
        if (!w || !visibleDuring(w, e) || !sameContent(w, answer))
          report(
            'read-unknown-version',
            `read of ${op.orgId}/${op.id} returned a version not current in its window`,
            [e],
            w ? [w] : list,
          );
      } else if (e.status === 404) {
        notFoundWhileExisting('read', op, list, e);
      } else if (e.status !== 0 && e.status !== 503) report('unexpected-answer', `read answered ${e.status}`, [e], []);
    } else if (op.kind === 'list' && e.status === 200) {
      if (!Array.isArray(e.body)) report('unexpected-answer', 'list answered 200 without a list', [e], []);
      for (const item of Array.isArray(e.body) ? e.body.map(answerOf) : []) {
        const w = versionsOf(op.orgId, String(item.id)).find((x) => x.version === item.version);
        if (!w || !visibleDuring(w, e) || !sameContent(w, item))
          report(
            'read-unknown-version',
            `list of ${op.orgId} returned ${item.id} v${item.version}, not current in its window`,
            [e],
            w ? [w] : [],
          );
      }
    }
  }

  // Preconditions: a write or delete with If-Match / If-None-Match happened only when it held, and a
  // 412 shows a current version (or none) that made it fail, current in the request's window.
  const etagOf = etagOfVersion;
  const deleteEnded = deletedVersions(events, state.versions);
  /** The precondition holds against the live version w (undefined: none live). */
  const holds = (op: Op, w: Version | undefined) =>
    'ifNoneMatch' in op && op.ifNoneMatch !== undefined
      ? w === undefined
      : w !== undefined &&
        (op.kind === 'write' || op.kind === 'delete') &&
        (op.ifMatch === '*' || op.ifMatch === etagOf(w));
  for (const e of events) {
    const op = e.op;
    if ((op.kind !== 'write' && op.kind !== 'delete') || e.batch?.undone) continue;
    const conditional = op.ifMatch !== undefined || (op.kind === 'write' && op.ifNoneMatch !== undefined);
    const answer = answerOf(e.body);
    const list = versionsOf(op.orgId, op.id);
    const what = `${op.kind} of ${op.orgId}/${op.id} with ${op.ifMatch === undefined ? 'If-None-Match: *' : `If-Match: ${op.ifMatch}`}`;
    if (e.status === 412) {
      const current = (answerOf(e.body) as { current?: Served | null }).current;
      if (!conditional || answer.code !== 'PRECONDITION_FAILED' || current === undefined) {
        report('unexpected-answer', `${op.kind} answered 412 without a precondition to fail`, [e], []);
        continue;
      }
      const w = current === null ? undefined : list.find((x) => x.version === current.version);
      const shown =
        current === null ? !surelyExisted(list, e) : w !== undefined && visibleDuring(w, e) && sameContent(w, current);
      if (!shown || holds(op, w))
        report(
          'precondition-without-cause',
          `${what} answered 412 showing ${current === null ? 'no appointment' : `v${current.version}`}, which ${shown ? 'satisfies it' : 'was not current in its window'}`,
          [e],
          near(list, e),
        );
      continue;
    }
    if (!conditional) continue;
    // the version the write replaced, or the one the delete ended
    let before: Version | undefined;
    let checked = false;
    if (op.kind === 'write' && (answer.status === 'created' || answer.status === 'updated')) {
      const prev = list.find((x) => x.version === Number(answer.appointment?.version) - 1);
      before = prev && !prev.deleted ? prev : undefined;
      checked = true;
    } else if (op.kind === 'write' && (answer.status === 'unchanged' || answer.status === 'stale')) {
      const w = list.find((x) => x.version === answer.appointment?.version);
      before = w && answer.appointment?.deletedAt === undefined ? w : undefined;
      checked = w !== undefined;
    } else if (op.kind === 'delete' && e.status === 204) {
      before = deleteEnded.get(e);
      checked = before !== undefined;
    }
    if (checked && !holds(op, before))
      report(
        'precondition-ignored',
        `${what} was applied (${op.kind === 'delete' ? 204 : answer.status}) against ${before ? `v${before.version}` : 'no live version'}, for which it fails`,
        [e],
        near(list, e),
      );
  }

  // Nothing in the history that no request asked for.
  for (const v of state.versions) {
    const ofId = eventsById.get(key(v.orgId, v.id)) ?? [];
    // (an item of an atomic batch that was refused asked for nothing: all or nothing)
    const asked = ofId.filter(
      (e) =>
        e.op.kind === 'write' && !e.batch?.undone && sameContent(e.op, v) && e.sentAt - TOLERANCE_US <= v.validFrom,
    );
    if (asked.length === 0)
      report('phantom-version', `version ${v.version} of ${v.orgId}/${v.id} matches no request`, [], [v]);
    const acks = acknowledged.get(v) ?? [];
    if (acks.length > 1)
      report(
        'double-acknowledgment',
        `version ${v.version} of ${v.orgId}/${v.id} acknowledged as created/updated ${acks.length} times`,
        acks,
        [v],
      );
    if (acks.length === 0 && !asked.some((e) => e.status === 0 || e.status >= 500)) {
      report(
        'unacknowledged-version',
        `version ${v.version} of ${v.orgId}/${v.id} was written but no request was told so`,
        asked.slice(0, 3),
        [v],
      );
    }
    if (v.deleted) {
      const deletes = ofId.filter(
        (e) =>
          e.op.kind === 'delete' && e.sentAt - TOLERANCE_US <= v.validTo! && e.answeredAt + TOLERANCE_US >= v.validTo!,
      );
      if (deletes.length === 0)
        report(
          'phantom-delete',
          `version ${v.version} of ${v.orgId}/${v.id} ended by a delete that no request asked for in time`,
          [],
          [v],
        );
    }
  }

  // Per id, the periods tile: versions 1..n, each ends where the next begins (after a delete, not earlier).
  for (const list of byId.values()) {
    list.forEach((v, i) => {
      const next = list[i + 1];
      if (v.version !== i + 1)
        report('broken-tiling', `${v.orgId}/${v.id}: version ${v.version} at position ${i + 1}`, [], [v]);
      if (v.validTo !== null && v.validTo <= v.validFrom)
        report('broken-tiling', `${v.orgId}/${v.id} v${v.version}: empty or negative period`, [], [v]);
      if (next) {
        const tiles = v.validTo !== null && (v.deleted ? next.validFrom >= v.validTo : next.validFrom === v.validTo);
        if (!tiles)
          report('broken-tiling', `${v.orgId}/${v.id}: v${v.version} and v${next.version} do not tile`, [], [v, next]);
      } else if (v.deleted !== (v.validTo !== null)) {
        report(
          'broken-tiling',
          `${v.orgId}/${v.id}: the last version is ${v.deleted ? 'deleted without an end' : 'ended without a delete'}`,
          [],
          [v],
        );
      }
    });
  }

  // Per org, the snapshot at every recorded instant is free of overlaps.
  const orgs = new Set(state.versions.map((v) => v.orgId));
  for (const orgId of orgs) {
    const vs = state.versions.filter((v) => v.orgId === orgId);
    const seen = new Set<string>();
    for (const t of new Set(vs.map((v) => v.validFrom))) {
      const alive = vs.filter((v) => v.validFrom <= t && (v.validTo === null || t < v.validTo));
      for (const [a, b] of overlappingPairs(alive)) {
        const pair = `${a.id}#${a.version}|${b.id}#${b.version}`;
        if (seen.has(pair)) continue;
        seen.add(pair);
        report(
          'overlapping-snapshot',
          `${orgId} at ${new Date(t / 1000).toISOString()}: ${a.id} v${a.version} [${a.start}, ${a.end}) overlaps ${b.id} v${b.version} [${b.start}, ${b.end})`,
          [],
          [a, b],
        );
      }
    }
  }

  // The final state is the last version of each id.
  for (const [orgId, listed] of state.finalState) {
    const expected = [...byId.values()]
      .filter((list) => list[0]!.orgId === orgId)
      .map((list) => list.at(-1)!)
      .filter((v) => v.validTo === null);
    const got = new Map(listed.map((a) => [a.id, a]));
    for (const v of expected) {
      const a = got.get(v.id);
      if (!a || a.version !== v.version || !sameContent(a, v))
        report('wrong-final-state', `${orgId}/${v.id}: the final state is not its last version ${v.version}`, [], [v]);
      got.delete(v.id);
    }
    for (const a of got.values())
      report(
        'wrong-final-state',
        `${orgId}/${a.id} is listed but its history has no current version`,
        [],
        versionsOf(orgId, String(a.id)),
      );
  }
  return anomalies;
}

/** The versions current within a second of the event's window: the ones worth printing. */
const near = (list: Version[], e: HistoryEvent) =>
  list.filter(
    (v) => v.validFrom <= e.answeredAt + 1_000_000 && (v.validTo === null || v.validTo >= e.sentAt - 1_000_000),
  );

/** A human-readable account of the anomalies: the seed to replay, and the events and versions of each. */
export function describeAnomalies(anomalies: Anomaly[], seed: number, limit = 20): string {
  const iso = (us: number | null) => (us === null ? 'null' : systemTimeText(us));
  const lines = [
    `${anomalies.length} anomalies (seed ${seed}; replay the same per-client operation streams with --seed ${seed})`,
  ];
  const rules = new Map<string, number>();
  for (const a of anomalies) rules.set(a.rule, (rules.get(a.rule) ?? 0) + 1);
  if (rules.size > 1) lines.push(`by rule: ${[...rules].map(([rule, n]) => `${rule} ${n}`).join(', ')}`);
  for (const a of anomalies.slice(0, limit)) {
    lines.push(`- ${a.rule}: ${a.message}`);
    for (const e of a.events) {
      lines.push(
        `    event #${e.index} client ${e.client}: ${JSON.stringify(e.op)} sent ${iso(e.sentAt)} answered ${iso(e.answeredAt)} -> ${e.status} ${JSON.stringify(e.body)}`,
      );
    }
    for (const v of a.versions) {
      lines.push(
        `    version ${v.orgId}/${v.id} v${v.version} [${v.start}, ${v.end}) updatedAt ${v.updatedAt} valid [${iso(v.validFrom)}, ${iso(v.validTo)})${v.deleted ? ' deleted' : ''}`,
      );
    }
    for (const line of a.lines ?? []) lines.push(`    ${line}`);
  }
  if (anomalies.length > limit) lines.push(`... and ${anomalies.length - limit} more`);
  return lines.join('\n');
}

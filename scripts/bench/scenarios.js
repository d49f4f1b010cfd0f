// The load scenarios, described once: the k6 scripts (scripts/k6/) and the Node runner
// (scripts/bench/run.ts) both build their requests here, so neither can drift from the other.
// Plain ES module with no Node or k6 API: k6 imports it by relative path, Node and vitest as usual.
//
// A request is { method, path, body?, expected }: `expected` lists the statuses a check accepts.
// A scenario whose requests each write many appointments says how many (itemsPerRequest).
// ctx is { run, at?, orgId?, appointments? }: `run` makes ids and org ids unique to one run, so runs can
// share a database; `at` is the instant of point-in-time reads (taken after seeding); `appointments` the
// size of the calendar of a scenario that seeds one (bulkSeed).
// A scenario with `bulkSeed: { appointments, orgId(ctx) }` seeds an org with that many appointments of
// calendarAppointment(0), calendarAppointment(1), ...: npm run bench in one SQL statement (run.ts), k6
// and the tests through its seed() of batches, of ctx.appointments (default CALENDAR.httpSeed).

const MINUTE = 60_000;
const SLOT = 30 * MINUTE;
/** Far from the seven classic payloads (2019-2020) and from every other scenario's slots. */
const BASE = Date.UTC(2030, 0, 1);
const iso = (ms) => new Date(ms).toISOString();

/**
 * The instant for point-in-time reads of what was seeded, taken once every seed write is answered.
 * The next millisecond: a write is recorded to the microsecond, and its answer can arrive within the
 * millisecond it was recorded in, which a time truncated to milliseconds would then precede.
 */
export const instantAfterSeeding = () => iso(Date.now() + 1);

export const MIX_ORGS = 100;
const READS_SEEDED = 150;
const MIX_SEEDED_PER_ORG = 20;
const HOT_IDS = 20;
/** The items of one batch-create request. */
export const BATCH_ITEMS = 100;

/** The seven payloads of scripts/concurrent-requests.sh, with the statuses each may get. */
export const CLASSIC_PAYLOADS = [
  [
    {
      id: 1,
      start: '2020-10-10 20:20',
      end: '2020-10-10 20:30',
      createdAt: '2020-09-02 14:23:12',
      updatedAt: '2020-09-28 14:23:12',
    },
    [200, 201, 409],
  ],
  [
    {
      id: 2,
      start: '2019-10-10 20:20',
      end: '2020-10-10 20:30',
      createdAt: '2018-10-02 16:23:12',
      updatedAt: '2020-09-28 14:23:12',
    },
    [200, 201, 409],
  ],
  [
    {
      id: 3,
      start: '2020-10-10 20:25',
      end: '2020-10-10 20:35',
      createdAt: '2020-10-01 13:23:12',
      updatedAt: '2020-09-28 14:23:12',
    },
    [200, 201, 409],
  ],
  [
    {
      id: 4,
      start: '2020-10-11 10:00',
      end: '2020-10-11 11:30',
      createdAt: '2020-10-01 11:23:12',
      updatedAt: '2020-09-28 14:23:12',
    },
    [200, 201],
  ],
  [
    {
      id: 5,
      start: '2020-10-12 11:27',
      end: '2020-10-10 12:27',
      createdAt: '2020-09-11 10:23:12',
      updatedAt: '2020-09-28 14:23:12',
    },
    [400],
  ],
  [
    {
      id: 6,
      start: '2020-10-12 12:00',
      end: '2020-10-12 13:30',
      createdAt: '2020-08-02 13:23:12',
      updatedAt: '2020-09-28 14:23:12',
    },
    [200, 201],
  ],
  [
    {
      id: 1,
      start: '2020-10-17 14:40',
      end: '2020-10-17 15:30',
      createdAt: '2020-03-02 19:23:12',
      updatedAt: '2020-09-28 14:24:12',
    },
    [200, 201],
  ],
];

const post = (body, expected) => ({ method: 'POST', path: '/api/appointments', body, expected });
const get = (path, expected = [200]) => ({ method: 'GET', path, expected });
const q = encodeURIComponent;

/** A small deterministic hash, so that a (vu, iter) pair always picks the same request. */
function pick(vu, iter, n) {
  let h = Math.imul(vu + 1, 0x9e3779b1) ^ Math.imul(iter + 1, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) % n;
}

/** A write in a slot of its own: slot numbers are unique per (vu, iter) within a run's org. */
const freshWrite = (orgId, id, slot, updatedMs = BASE) => ({
  orgId,
  id,
  start: iso(BASE + slot * SLOT),
  end: iso(BASE + (slot + 1) * SLOT),
  createdAt: iso(BASE - MINUTE),
  updatedAt: iso(updatedMs),
});
const uniqueSlot = (vu, iter) => iter * 1024 + vu; // up to 1024 VUs

/**
 * The calendar of a large org (the availability scenario): from Monday 2030-01-07, on working days
 * (Monday to Friday), `perDay` periods of `periodMinutes` from `firstHourUtc` each hold one appointment
 * of 30 to 60 minutes, at the start of its period, in the middle or at its end: non-overlapping by
 * construction, sometimes touching the next, with gaps of up to an hour between them. run.ts writes
 * the same calendar in SQL (calendar.ts). A million of them fill centuries of working weeks: an org
 * never overlaps itself.
 */
export const CALENDAR = {
  firstMonday: Date.UTC(2030, 0, 7),
  workingDays: 5,
  firstHourUtc: 7,
  perDay: 8,
  periodMinutes: 90,
  /** The calendar seeded through HTTP (k6, tests) unless ctx.appointments says otherwise. */
  httpSeed: 10_000,
};
const DAY = 24 * 60 * MINUTE;
const WEEK = 7 * DAY;
const perWeek = CALENDAR.workingDays * CALENDAR.perDay;

/** Appointment g (from 0) of the calendar; calendar.ts computes the same in SQL with the same integers. */
export function calendarAppointment(g) {
  const { firstMonday, workingDays, firstHourUtc, perDay, periodMinutes } = CALENDAR;
  const week = Math.floor(g / perWeek);
  const day = Math.floor(g / perDay) % workingDays;
  const minutes = 30 + 10 * (g % 4); // 30, 40, 50 or 60
  const offset = (((g * 7) % 3) * (periodMinutes - minutes)) / 2; // at the start, in the middle or at the end
  const start =
    firstMonday + week * WEEK + day * DAY + (firstHourUtc * 60 + (g % perDay) * periodMinutes + offset) * MINUTE;
  return { id: `a-${g}`, start: iso(start), end: iso(start + minutes * MINUTE) };
}

/**
 * Local midnight in Europe/Berlin at the start of the UTC date `dayMs`, by the EU rule the zone follows
 * (summer time from the last Sunday of March to the last Sunday of October, changing at 01:00 UTC):
 * k6 has no time zone data. Only for Mondays, which no change falls on.
 */
function berlinMidnight(dayMs) {
  const year = new Date(dayMs).getUTCFullYear();
  const lastSunday = (month) => {
    const last = Date.UTC(year, month + 1, 0);
    return last - new Date(last).getUTCDay() * DAY;
  };
  const summer = dayMs > lastSunday(2) && dayMs < lastSunday(9);
  return dayMs - (summer ? 2 : 1) * 60 * MINUTE;
}

const calendarSize = (ctx) => ctx.appointments ?? CALENDAR.httpSeed;
const availabilityOrg = (ctx) => ctx.orgId ?? `availability-${ctx.run}`;
/** The weeks the seeded calendar covers, from Monday to Monday in Europe/Berlin. */
const calendarWeek = (ctx, vu, iter) => {
  const monday = CALENDAR.firstMonday + pick(vu, iter, Math.ceil(calendarSize(ctx) / perWeek)) * WEEK;
  return [berlinMidnight(monday), berlinMidnight(monday + WEEK)];
};

const readsOrg = (ctx) => `reads-${ctx.run}`;
const mixOrg = (ctx, n) => `mix-${ctx.run}-${n}`;

const readsSeed = (ctx) => [
  ...Array.from({ length: READS_SEEDED }, (_, n) => post(freshWrite(readsOrg(ctx), `r-${n}`, n), [201])),
  ...Array.from({ length: READS_SEEDED / 3 }, (_, n) =>
    post(freshWrite(readsOrg(ctx), `r-${n * 3}`, n * 3, BASE + MINUTE), [200]),
  ),
];
const readId = (vu, iter) => `r-${pick(vu, iter, READS_SEEDED)}`;
/** The four reads of the reads scenario, by kind. */
const READS = {
  list: {
    title: 'a list of 100',
    request: (ctx) => get(`/api/appointments?orgId=${q(readsOrg(ctx))}&limit=100`),
  },
  one: {
    title: 'one appointment by id',
    request: (ctx, vu, iter) => get(`/api/appointments/${readId(vu, iter)}?orgId=${q(readsOrg(ctx))}`),
  },
  history: {
    title: "an appointment's history",
    request: (ctx, vu, iter) => get(`/api/appointments/${readId(vu, iter)}/history?orgId=${q(readsOrg(ctx))}`),
  },
  at: {
    title: 'a point-in-time list of 100 (?at=)',
    request: (ctx) => get(`/api/appointments?orgId=${q(readsOrg(ctx))}&limit=100&at=${q(ctx.at)}`),
  },
};
const READ_KINDS = Object.keys(READS);

export const scenarios = {
  'classic-mix': {
    title: 'classic seven-payload mix',
    description: 'Each request one of the seven payloads of scripts/concurrent-requests.sh, in an org of the run.',
    seed: () => [],
    request(ctx, vu, iter) {
      const [payload, expected] = CLASSIC_PAYLOADS[pick(vu, iter, CLASSIC_PAYLOADS.length)];
      return post({ ...payload, orgId: ctx.orgId ?? `classic-${ctx.run}` }, expected);
    },
  },
  'create-heavy': {
    title: 'create-heavy',
    description: 'Every request a new id in a free 30-minute slot.',
    seed: () => [],
    request(ctx, vu, iter) {
      const orgId = ctx.orgId ?? `create-${ctx.run}`;
      return post(freshWrite(orgId, `c-${ctx.run}-${vu}-${iter}`, (ctx.slotOffset ?? 0) + uniqueSlot(vu, iter)), [201]);
    },
  },
  'batch-create': {
    title: 'batch create (100 items)',
    itemsPerRequest: BATCH_ITEMS,
    description: `Every request a batch of ${BATCH_ITEMS} new ids, each in a free slot: ${BATCH_ITEMS} appointments a request.`,
    seed: () => [],
    request(ctx, vu, iter) {
      const orgId = ctx.orgId ?? `batch-${ctx.run}`;
      // the (vu, iter) slot of create-heavy, cut into one short appointment per item
      const from = BASE + ((ctx.slotOffset ?? 0) + uniqueSlot(vu, iter)) * SLOT;
      const length = SLOT / BATCH_ITEMS;
      const appointments = Array.from({ length: BATCH_ITEMS }, (_, k) => ({
        orgId,
        id: `b-${ctx.run}-${vu}-${iter}-${k}`,
        start: iso(from + k * length),
        end: iso(from + (k + 1) * length),
        createdAt: iso(BASE - MINUTE),
        updatedAt: iso(BASE),
      }));
      return { method: 'POST', path: '/api/appointments/batch', body: { appointments }, expected: [200] };
    },
  },
  'update-heavy': {
    title: 'update-heavy',
    description: `${HOT_IDS} hot ids updated with ever-newer updatedAt.`,
    seed: (ctx) =>
      Array.from({ length: HOT_IDS }, (_, n) => post(freshWrite(`update-${ctx.run}`, `hot-${n}`, n), [201])),
    request(ctx, vu, iter) {
      const n = pick(vu, iter, HOT_IDS);
      // ever newer: a later iteration always carries a later updatedAt; equal ones meet as stale or unchanged (200)
      return post(freshWrite(`update-${ctx.run}`, `hot-${n}`, n, BASE + (iter + 1) * 1024 + vu), [200]);
    },
  },
  contention: {
    title: 'contention',
    description: 'Many writers, new ids, 30-minute appointments in one 2-hour window: mostly 409.',
    seed: () => [],
    request(ctx, vu, iter) {
      const start = BASE + pick(vu, iter, 90) * MINUTE;
      return post(
        {
          orgId: `contention-${ctx.run}`,
          id: `w-${vu}-${iter}`,
          start: iso(start),
          end: iso(start + SLOT),
          createdAt: iso(BASE),
          updatedAt: iso(BASE),
        },
        [201, 409],
      );
    },
  },
  reads: {
    title: 'reads',
    description: `List (100 items), one by id, history, and point-in-time list ?at= on an org of ${READS_SEEDED} appointments, a third of them updated.`,
    seed: readsSeed,
    request: (ctx, vu, iter) => READS[READ_KINDS[iter % READ_KINDS.length]].request(ctx, vu, iter),
  },
  // each read of the reads scenario alone, at 10 connections only: the read targets of issue 16
  ...Object.fromEntries(
    READ_KINDS.map((kind) => [
      `reads-${kind}`,
      {
        title: `reads: ${READS[kind].title}`,
        description: `Only ${READS[kind].title}, in the org of the reads scenario.`,
        connections: [10],
        seed: readsSeed,
        request: READS[kind].request,
      },
    ]),
  ),
  'read-write-mix': {
    title: '80% reads, 20% writes, 100 orgs',
    description: `${MIX_ORGS} orgs of ${MIX_SEEDED_PER_ORG} appointments; reads list an org or get one appointment, writes create in a free slot or update a seeded one.`,
    seed: (ctx) =>
      Array.from({ length: MIX_ORGS * MIX_SEEDED_PER_ORG }, (_, k) =>
        post(freshWrite(mixOrg(ctx, k % MIX_ORGS), `m-${Math.floor(k / MIX_ORGS)}`, Math.floor(k / MIX_ORGS)), [201]),
      ),
    request(ctx, vu, iter) {
      const n = pick(vu, iter, MIX_ORGS);
      const org = mixOrg(ctx, n);
      const seeded = pick(iter, vu, MIX_SEEDED_PER_ORG);
      switch (pick(vu + 7, iter, 10)) {
        case 0: // a create, beyond the seeded slots
          return post(freshWrite(org, `n-${vu}-${iter}`, MIX_SEEDED_PER_ORG + uniqueSlot(vu, iter)), [201]);
        case 1: // an update of a seeded one, same slot, newer updatedAt (stale if another writer was newer)
          return post(freshWrite(org, `m-${seeded}`, seeded, BASE + (iter + 1) * 1024 + vu), [200]);
        case 2:
        case 3:
        case 4:
        case 5:
          return get(`/api/appointments?orgId=${q(org)}&limit=100`);
        default:
          return get(`/api/appointments/m-${seeded}?orgId=${q(org)}`);
      }
    },
  },
  availability: {
    title: 'availability of a week',
    description:
      'Free/busy and 30-minute slots of one week (from a Monday midnight in Europe/Berlin, opening hours 09:00-12:00 and ' +
      '13:00-17:00 on working days) in an org of a large calendar; one request in four as recorded at an instant (?at=).',
    bulkSeed: { appointments: 1_000_000, orgId: availabilityOrg },
    seed(ctx) {
      const size = calendarSize(ctx);
      return Array.from({ length: Math.ceil(size / 1000) }, (_, b) => ({
        method: 'POST',
        path: '/api/appointments/batch',
        body: {
          appointments: Array.from({ length: Math.min(1000, size - b * 1000) }, (_, k) => ({
            orgId: availabilityOrg(ctx),
            ...calendarAppointment(b * 1000 + k),
            createdAt: iso(BASE - MINUTE),
            updatedAt: iso(BASE),
          })),
        },
        expected: [200],
      }));
    },
    request(ctx, vu, iter) {
      const [from, to] = calendarWeek(ctx, vu, iter);
      const at = iter % 4 === 3 ? `&at=${q(ctx.at)}` : '';
      return get(
        `/api/availability?orgId=${q(availabilityOrg(ctx))}&from=${iso(from)}&to=${iso(to)}&timeZone=Europe/Berlin` +
          `&hours=09:00-12:00,13:00-17:00&days=mon,tue,wed,thu,fri&duration=30${at}`,
      );
    },
  },
};

export const SCENARIO_NAMES = Object.keys(scenarios);

import { describe, expect, it } from 'vitest';
import { availabilityOracle, instantOfWallTime, type OracleQuery } from './support/availability-oracle.js';

// The oracle the availability property test trusts, checked on the examples of issue 13 and on the
// other zones it names: a wrong oracle would let a wrong service pass.

const hm = (text: string) => {
  const [h, m] = text.split(':').map(Number) as [number, number];
  return h * 60 + m;
};
const hours = (...ranges: string[]) =>
  ranges.map((range) => {
    const [start, end] = range.split('-') as [string, string];
    return { start: hm(start), end: hm(end) };
  });
const period = (start: string, end: string) => ({ start: `${start}:00.000Z`, end: `${end}:00.000Z` });
const local = (timeZone: string, wall: string) =>
  new Date(instantOfWallTime(timeZone, Date.parse(`${wall}:00Z`))).toISOString();

/** The free time of one whole local day, no appointments. */
const oneDay = (timeZone: string, date: string, next: string, ...ranges: string[]) =>
  availabilityOracle({
    from: local(timeZone, `${date}T00:00`),
    to: local(timeZone, `${next}T00:00`),
    appointments: [],
    timeZone,
    hours: hours(...ranges),
  }).free;

const elapsedHours = (periods: { start: string; end: string }[]) =>
  periods.reduce((sum, p) => sum + (Date.parse(p.end) - Date.parse(p.start)), 0) / 3_600_000;

describe('the availability oracle: local times', () => {
  it('reads a local time in a spring-forward gap with the offset before it (02:30 is 03:30 CEST)', () => {
    expect(local('Europe/Berlin', '2026-03-29T02:30')).toBe('2026-03-29T01:30:00.000Z');
    expect(local('Europe/Berlin', '2026-03-29T02:00')).toBe('2026-03-29T01:00:00.000Z');
    expect(local('Europe/Berlin', '2026-03-29T03:00')).toBe('2026-03-29T01:00:00.000Z');
    expect(local('Europe/Berlin', '2026-03-29T01:59')).toBe('2026-03-29T00:59:00.000Z');
  });

  it('reads an ambiguous local time as its first occurrence (fall-back 02:30 is 02:30 CEST)', () => {
    expect(local('Europe/Berlin', '2026-10-25T02:30')).toBe('2026-10-25T00:30:00.000Z');
    expect(local('Europe/Berlin', '2026-10-25T02:00')).toBe('2026-10-25T00:00:00.000Z');
    expect(local('Europe/Berlin', '2026-10-25T03:00')).toBe('2026-10-25T02:00:00.000Z');
    expect(local('America/New_York', '2026-11-01T01:30')).toBe('2026-11-01T05:30:00.000Z');
  });

  it('knows half-hour and 45-minute zones and shifts', () => {
    // Lord Howe: +10:30 to +11 at 02:00 on 4 October 2026, back at 02:00 (+11) on 5 April 2026
    expect(local('Australia/Lord_Howe', '2026-10-04T02:15')).toBe('2026-10-03T15:45:00.000Z');
    expect(local('Australia/Lord_Howe', '2026-04-05T01:45')).toBe('2026-04-04T14:45:00.000Z');
    expect(local('Asia/Kathmandu', '2026-01-01T00:00')).toBe('2025-12-31T18:15:00.000Z');
    // Chatham: +12:45 to +13:45 at 02:45 on 27 September 2026
    expect(local('Pacific/Chatham', '2026-09-27T02:50')).toBe('2026-09-26T14:05:00.000Z');
    expect(local('Pacific/Chatham', '2026-07-01T12:00')).toBe('2026-06-30T23:15:00.000Z');
  });
});

describe('the availability oracle: opening hours across daylight saving', () => {
  it('gives 23 hours for 00:00-24:00, 3 for 01:00-05:00, 8 for 09:00-17:00 on the Berlin spring-forward day', () => {
    const day = (...ranges: string[]) => oneDay('Europe/Berlin', '2026-03-29', '2026-03-30', ...ranges);
    expect(day('00:00-24:00')).toEqual([period('2026-03-28T23:00', '2026-03-29T22:00')]);
    expect(elapsedHours(day('00:00-24:00'))).toBe(23);
    expect(day('01:00-05:00')).toEqual([period('2026-03-29T00:00', '2026-03-29T03:00')]);
    expect(day('09:00-17:00')).toEqual([period('2026-03-29T07:00', '2026-03-29T15:00')]);
  });

  it('closes a range whose converted start is not before its end, keeps one inside the gap moved', () => {
    const day = (...ranges: string[]) => oneDay('Europe/Berlin', '2026-03-29', '2026-03-30', ...ranges);
    expect(day('02:00-03:00')).toEqual([]);
    expect(day('02:30-03:00')).toEqual([]);
    expect(day('02:15-02:45')).toEqual([period('2026-03-29T01:15', '2026-03-29T01:45')]);
    expect(day('02:30-04:00')).toEqual([period('2026-03-29T01:30', '2026-03-29T02:00')]);
  });

  it('gives 25 hours for a Berlin fall-back day, the first 02:30 as start and as end', () => {
    const day = (...ranges: string[]) => oneDay('Europe/Berlin', '2026-10-25', '2026-10-26', ...ranges);
    expect(elapsedHours(day('00:00-24:00'))).toBe(25);
    expect(day('02:30-03:00')).toEqual([period('2026-10-25T00:30', '2026-10-25T02:00')]);
    expect(day('01:00-02:30')).toEqual([period('2026-10-24T23:00', '2026-10-25T00:30')]);
  });

  it('gives 23.5 and 24.5 hours on the Lord Howe change days', () => {
    expect(elapsedHours(oneDay('Australia/Lord_Howe', '2026-10-04', '2026-10-05', '00:00-24:00'))).toBe(23.5);
    expect(elapsedHours(oneDay('Australia/Lord_Howe', '2026-04-05', '2026-04-06', '00:00-24:00'))).toBe(24.5);
  });
});

describe('the availability oracle: busy, free and slots', () => {
  const base: OracleQuery = {
    from: '2026-03-27T00:00:00.000Z',
    to: '2026-03-31T00:00:00.000Z',
    appointments: [
      period('2026-03-29T09:00', '2026-03-29T10:00'),
      period('2026-03-29T08:00', '2026-03-29T09:00'),
      period('2026-03-26T20:00', '2026-03-27T01:00'),
      period('2026-03-30T23:00', '2026-03-31T02:00'),
      period('2026-03-31T00:00', '2026-03-31T03:00'),
    ],
  };

  it('clips busy time to the window and merges touching appointments, ignoring opening hours', () => {
    const busy = [
      period('2026-03-27T00:00', '2026-03-27T01:00'),
      period('2026-03-29T08:00', '2026-03-29T10:00'),
      period('2026-03-30T23:00', '2026-03-31T00:00'),
    ];
    expect(availabilityOracle(base).busy).toEqual(busy);
    expect(availabilityOracle({ ...base, timeZone: 'Europe/Berlin', hours: hours('09:00-17:00') }).busy).toEqual(busy);
  });

  it('without hours and days, the whole window is open', () => {
    expect(availabilityOracle(base).free).toEqual([
      period('2026-03-27T01:00', '2026-03-29T08:00'),
      period('2026-03-29T10:00', '2026-03-30T23:00'),
    ]);
  });

  it('merges touching ranges, across local midnight too; days name the date a range belongs to', () => {
    const answer = availabilityOracle({
      from: '2026-06-05T00:00:00.000Z',
      to: '2026-06-09T00:00:00.000Z',
      appointments: [],
      timeZone: 'America/New_York',
      hours: hours('22:00-24:00', '00:00-06:00', '09:00-12:00', '11:00-13:00'),
      days: ['sat'],
    });
    // Saturday 6 June, EDT (-4): 00:00-06:00, 09:00-13:00, 22:00-24:00; Sunday 00:00 is not open
    expect(answer.free).toEqual([
      period('2026-06-06T04:00', '2026-06-06T10:00'),
      period('2026-06-06T13:00', '2026-06-06T17:00'),
      period('2026-06-07T02:00', '2026-06-07T04:00'),
    ]);
    const twoDays = availabilityOracle({
      from: '2026-06-05T00:00:00.000Z',
      to: '2026-06-09T00:00:00.000Z',
      appointments: [],
      timeZone: 'America/New_York',
      hours: hours('22:00-24:00', '00:00-06:00'),
      days: ['sat', 'sun'],
    });
    expect(twoDays.free).toEqual([
      period('2026-06-06T04:00', '2026-06-06T10:00'),
      period('2026-06-07T02:00', '2026-06-07T10:00'),
      period('2026-06-08T02:00', '2026-06-08T04:00'),
    ]);
  });

  it('days without hours means whole local days; partial first and last days are expanded and clipped', () => {
    const answer = availabilityOracle({
      from: '2026-01-02T20:30:00.000Z',
      to: '2026-01-05T03:00:00.000Z',
      appointments: [],
      timeZone: 'Asia/Kathmandu',
      days: ['sat', 'mon'],
    });
    // Saturday 3 January from 18:15Z on the 2nd; Monday 5 January from 18:15Z on the 4th, to the window's end
    expect(answer.free).toEqual([
      period('2026-01-02T20:30', '2026-01-03T18:15'),
      period('2026-01-04T18:15', '2026-01-05T03:00'),
    ]);
  });

  it('puts slots on the grid from + k * step, keeping seconds, each wholly inside one free period', () => {
    const answer = availabilityOracle({
      from: '2026-03-29T06:59:30.250Z',
      to: '2026-03-29T16:00:00.000Z',
      appointments: [period('2026-03-29T08:00', '2026-03-29T09:00'), period('2026-03-29T09:00', '2026-03-29T10:00')],
      timeZone: 'Europe/Berlin',
      hours: hours('09:00-12:00', '12:00-17:00'),
      duration: 60,
      step: 90,
    });
    expect(answer.free).toEqual([
      period('2026-03-29T07:00', '2026-03-29T08:00'),
      period('2026-03-29T10:00', '2026-03-29T15:00'),
    ]);
    // the grid from 06:59:30.250 every 90 minutes: 08:29:30 is busy, 09:59:30 starts before 10:00, 14:29:30 ends after 15:00
    expect(answer.slots).toEqual([
      { start: '2026-03-29T11:29:30.250Z', end: '2026-03-29T12:29:30.250Z' },
      { start: '2026-03-29T12:59:30.250Z', end: '2026-03-29T13:59:30.250Z' },
    ]);
    expect(availabilityOracle({ ...base, duration: 24 * 60 * 10 }).slots).toEqual([]);
    expect(availabilityOracle(base).slots).toBeUndefined();
  });

  it('keeps the grid in UTC spacing across an offset change; step defaults to duration', () => {
    const answer = availabilityOracle({
      from: '2026-10-25T00:00:00.000Z',
      to: '2026-10-25T04:00:00.000Z',
      appointments: [],
      timeZone: 'Europe/Berlin',
      duration: 60,
    });
    expect(answer.slots!.map((slot) => slot.start)).toEqual([
      '2026-10-25T00:00:00.000Z',
      '2026-10-25T01:00:00.000Z',
      '2026-10-25T02:00:00.000Z',
      '2026-10-25T03:00:00.000Z',
    ]);
  });
});

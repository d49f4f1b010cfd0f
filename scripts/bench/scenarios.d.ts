// Types of scenarios.js (kept as plain JavaScript so that k6 can import it).
export interface ScenarioContext {
  run: string;
  /** The instant of point-in-time reads. */
  at?: string;
  orgId?: string;
  slotOffset?: number;
  /** The size of the calendar a scenario with bulkSeed seeds (seed() and request() read it). */
  appointments?: number;
}
export interface ScenarioRequest {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: Record<string, unknown>;
  expected: number[];
}
export interface Scenario {
  title: string;
  /** Appointments each request writes (a batch); 1 when absent. */
  itemsPerRequest?: number;
  description: string;
  /** The connection counts to run at, instead of the benchmark's own. */
  connections?: number[];
  /** An org of a large calendar (calendarAppointment), seeded in bulk where SQL can do it. */
  bulkSeed?: { appointments: number; orgId(ctx: ScenarioContext): string };
  seed(ctx: ScenarioContext): ScenarioRequest[];
  request(ctx: ScenarioContext, vu: number, iter: number): ScenarioRequest;
}
export declare const instantAfterSeeding: () => string;
export declare const MIX_ORGS: number;
export declare const BATCH_ITEMS: number;
export declare const CLASSIC_PAYLOADS: Array<[Record<string, string | number>, number[]]>;
export declare const CALENDAR: {
  firstMonday: number;
  workingDays: number;
  firstHourUtc: number;
  perDay: number;
  periodMinutes: number;
  httpSeed: number;
};
export declare function calendarAppointment(g: number): { id: string; start: string; end: string };
export declare const scenarios: Record<
  | 'classic-mix'
  | 'create-heavy'
  | 'batch-create'
  | 'update-heavy'
  | 'contention'
  | 'reads'
  | 'reads-list'
  | 'reads-one'
  | 'reads-history'
  | 'reads-at'
  | 'read-write-mix'
  | 'availability',
  Scenario
>;
export declare const SCENARIO_NAMES: string[];

// Types of scenarios.js (kept as plain JavaScript so that k6 can import it).
export interface ScenarioContext {
  run: string;
  /** The instant of point-in-time reads. */
  at?: string;
  orgId?: string;
  slotOffset?: number;
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
  seed(ctx: ScenarioContext): ScenarioRequest[];
  request(ctx: ScenarioContext, vu: number, iter: number): ScenarioRequest;
}
export declare const instantAfterSeeding: () => string;
export declare const MIX_ORGS: number;
export declare const BATCH_ITEMS: number;
export declare const CLASSIC_PAYLOADS: Array<[Record<string, string | number>, number[]]>;
export declare const scenarios: Record<
  'classic-mix' | 'create-heavy' | 'batch-create' | 'update-heavy' | 'contention' | 'reads' | 'read-write-mix',
  Scenario
>;
export declare const SCENARIO_NAMES: string[];

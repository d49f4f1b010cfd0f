// k6 run -e BASE_URL=http://127.0.0.1:3000 -e VUS=10 [-e APPOINTMENTS=1000000] [-e RATE=200] [-e DURATION=30s] scripts/k6/availability.js
// The scenario itself is described in scripts/bench/scenarios.js (shared with npm run bench). Its setup
// seeds the org's calendar through POST /api/appointments/batch, 1000 a request: APPOINTMENTS of them
// (default 10,000; the million takes a while, which npm run bench saves by seeding in SQL).
import { k6Scenario } from './lib.js';

const scenario = k6Scenario('availability');
export const options = scenario.options;
export const setup = scenario.setup;
export default scenario.run;

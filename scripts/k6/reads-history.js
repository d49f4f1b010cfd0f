// k6 run -e BASE_URL=http://127.0.0.1:3000 -e VUS=10 [-e RATE=200] [-e DURATION=30s] scripts/k6/reads-history.js
// The scenario itself is described in scripts/bench/scenarios.js (shared with npm run bench).
import { k6Scenario } from './lib.js';

const scenario = k6Scenario('reads-history');
export const options = scenario.options;
export const setup = scenario.setup;
export default scenario.run;

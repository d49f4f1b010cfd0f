// Shared by the k6 scripts of this folder: options, setup and the request loop of one scenario from
// scripts/bench/scenarios.js. Environment: BASE_URL (default http://127.0.0.1:3000), VUS (default 10),
// RATE (requests per second; unset: each VU sends as fast as it gets answers), DURATION (default 30s),
// P99_MS (the p99 latency threshold, default 500), APPOINTMENTS (the size of the calendar a scenario seeds,
// where it seeds one: availability).
import http from 'k6/http';
import { check } from 'k6';
import { instantAfterSeeding, scenarios } from '../bench/scenarios.js';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:3000').replace(/\/$/, '');
const VUS = Number(__ENV.VUS || 10);
const RATE = __ENV.RATE ? Number(__ENV.RATE) : undefined;
const DURATION = __ENV.DURATION || '30s';
const P99_MS = Number(__ENV.P99_MS || 500);
const APPOINTMENTS = __ENV.APPOINTMENTS ? Number(__ENV.APPOINTMENTS) : undefined;

const JSON_HEADERS = { headers: { 'content-type': 'application/json' } };

function send(request) {
  const body = request.body === undefined ? null : JSON.stringify(request.body);
  return http.request(request.method, `${BASE_URL}${request.path}`, body, {
    ...JSON_HEADERS,
    // the scenario's expected statuses are not failures (k6 counts every 4xx as one by default)
    responseCallback: http.expectedStatuses(...request.expected),
    tags: {
      name: `${request.method} ${request.path.split('?')[0].replace(/\/api\/appointments\/(?!batch$)[^/]+/, '/api/appointments/:id')}`,
    },
  });
}

export function k6Scenario(name) {
  const scenario = scenarios[name];
  const executor = RATE
    ? {
        executor: 'constant-arrival-rate',
        rate: RATE,
        timeUnit: '1s',
        duration: DURATION,
        preAllocatedVUs: VUS,
        maxVUs: VUS * 2,
      }
    : { executor: 'constant-vus', vus: VUS, duration: DURATION };
  return {
    options: {
      scenarios: { [name]: executor },
      // a calendar of a million appointments is a thousand batches: more than k6's default minute
      setupTimeout: '15m',
      thresholds: {
        http_req_failed: ['rate<0.01'],
        http_req_duration: [`p(99)<${P99_MS}`],
        checks: ['rate>0.99'],
      },
    },
    setup() {
      const ctx = { run: `k6${Date.now().toString(36)}`, ...(APPOINTMENTS ? { appointments: APPOINTMENTS } : {}) };
      for (const request of scenario.seed(ctx)) {
        const res = send(request);
        check(res, { 'seed accepted': (r) => request.expected.includes(r.status) });
      }
      return { ...ctx, at: instantAfterSeeding() };
    },
    run(ctx) {
      const request = scenario.request(ctx, __VU, __ITER);
      const res = send(request);
      check(res, {
        [`status in ${request.expected.join('/')}`]: (r) => request.expected.includes(r.status),
        'no 5xx': (r) => r.status < 500,
      });
    },
  };
}

import { describe, expect, it } from 'vitest';
import { effectOf } from '../src/webhook-delivery.js';
import { attemptError, MAX_RETRY_AFTER_MS, retryAfterMs, signatures } from '../src/webhook-sender.js';
import { verifies } from '../scripts/lib/webhook-receiver.js';

// The pieces of an attempt that need no receiver: Retry-After, the error words, the schedule, signatures.

const NOW = Date.parse('2026-12-01T12:00:00Z');
const result = (statusCode: number | null, retryAfter: number | null = null) => ({
  attemptedAt: '',
  statusCode,
  error: statusCode === null ? 'timeout' : null,
  durationMs: 1,
  retryAfterMs: retryAfter,
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates, caps them at 24 h, and ignores anything else', () => {
    expect(retryAfterMs('120', NOW)).toBe(120_000);
    expect(retryAfterMs(' 0 ', NOW)).toBe(0);
    expect(retryAfterMs('Tue, 01 Dec 2026 12:01:30 GMT', NOW)).toBe(90_000);
    expect(retryAfterMs('Tue, 01 Dec 2026 11:00:00 GMT', NOW)).toBe(0);
    expect(retryAfterMs('999999', NOW)).toBe(MAX_RETRY_AFTER_MS);
    expect(retryAfterMs('Sat, 01 Dec 2029 12:00:00 GMT', NOW)).toBe(MAX_RETRY_AFTER_MS);
    for (const text of [undefined, '', 'soon', '1.5', '-3']) expect(retryAfterMs(text, NOW), String(text)).toBeNull();
    expect(retryAfterMs(['7', '9'], NOW)).toBe(7_000);
  });
});

describe('the error of an attempt without an answer', () => {
  it('maps Node and undici codes, through causes, to the words of the delivery log', () => {
    const e = (code: string, message = code) => Object.assign(new Error(message), { code });
    expect(attemptError(e('ECONNREFUSED'), false)).toBe('connection refused');
    expect(attemptError(e('ECONNRESET'), false)).toBe('connection reset');
    expect(attemptError(e('UND_ERR_SOCKET'), false)).toBe('connection reset');
    expect(attemptError(e('ENOTFOUND'), false)).toBe('dns lookup failed');
    expect(attemptError(e('EAI_AGAIN'), false)).toBe('dns lookup failed');
    expect(attemptError(e('EADDRNOTALLOWED'), false)).toBe('address not allowed');
    expect(attemptError(e('UND_ERR_HEADERS_TIMEOUT'), false)).toBe('timeout');
    expect(attemptError(e('UND_ERR_CONNECT_TIMEOUT'), false)).toBe('timeout');
    expect(attemptError(e('ECONNRESET'), true)).toBe('timeout');
    expect(attemptError(e('DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'), false)).toBe(
      'tls error: self-signed certificate',
    );
    expect(attemptError(e('ERR_TLS_CERT_ALTNAME_INVALID', 'Hostname/IP does not match'), false)).toBe(
      'tls error: Hostname/IP does not match',
    );
    expect(attemptError(Object.assign(new Error('fetch failed'), { cause: e('ECONNREFUSED') }), false)).toBe(
      'connection refused',
    );
  });
});

describe('what an outcome does', () => {
  const schedule = [1_000, 2_000, 4_000];
  it('delivers on 2xx, retries after the n-th delay (jitter adds at most 10%), gives up after the last', () => {
    expect(effectOf(result(204), 0, schedule)).toEqual({ next: 'delivered', pauseMs: null, gone: false });
    for (const [before, delay] of [
      [0, 1_000],
      [1, 2_000],
      [2, 4_000],
    ] as const) {
      for (let i = 0; i < 50; i++) {
        const { next } = effectOf(result(500), before, schedule);
        expect(next).toBeGreaterThanOrEqual(delay);
        expect(next).toBeLessThanOrEqual(delay * 1.1);
      }
    }
    expect(effectOf(result(500), 3, schedule)).toEqual({ next: null, pauseMs: null, gone: false });
    expect(effectOf(result(null), 3, schedule).next).toBeNull();
    expect(effectOf(result(302), 0, schedule).next).toBeGreaterThanOrEqual(1_000);
  });

  it('a 410 gives up at once and disables; Retry-After pauses the endpoint', () => {
    expect(effectOf(result(410), 0, schedule)).toEqual({ next: null, pauseMs: null, gone: true });
    expect(effectOf(result(429, 30_000), 0, schedule)).toMatchObject({ pauseMs: 30_000, gone: false });
  });
});

describe('signatures', () => {
  it('are one v1 signature per secret, space-separated, each verified by standardwebhooks', () => {
    const a = `whsec_${Buffer.alloc(32, 1).toString('base64')}`;
    const b = `whsec_${Buffer.alloc(32, 2).toString('base64')}`;
    const at = new Date(Math.floor(Date.now() / 1000) * 1000);
    const body = '{"type":"webhook.test"}';
    const both = signatures([a, b], 'msg_1', at, body);
    expect(both).toMatch(/^v1,\S+ v1,\S+$/);
    const request = { id: 'msg_1', timestamp: String(at.getTime() / 1000), signature: both, body } as never;
    expect(verifies(a, request)).toBe(true);
    expect(verifies(b, request)).toBe(true);
    const one = {
      id: 'msg_1',
      timestamp: String(at.getTime() / 1000),
      signature: signatures([b], 'msg_1', at, body),
      body,
    };
    expect(verifies(a, one as never)).toBe(false);
    expect(verifies(b, one as never)).toBe(true);
  });
});

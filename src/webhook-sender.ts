import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';
import { isIP } from 'node:net';
import { ADDRESS_NOT_ALLOWED, allowedLookup, isPublicAddress } from './webhook-urls.js';

// One webhook attempt over HTTP, by the Standard Webhooks spec: signed headers, a POST of the stored
// body, no redirect followed (undici's request follows none without its redirect interceptor), an
// answer judged by its status line within the timeout, and at most MAX_ANSWER_BYTES of it read.

/** How much of a receiver's answer is read (and dropped) before the connection is let go. */
export const MAX_ANSWER_BYTES = 64 * 1024;
/** The most a Retry-After holds an endpoint. */
export const MAX_RETRY_AFTER_MS = 24 * 3_600_000;

export const USER_AGENT = 'appointments-service-webhooks/0.1 (+https://www.standardwebhooks.com)';

export interface SendResult {
  /** When the attempt began (ISO 8601). */
  attemptedAt: string;
  statusCode: number | null;
  /** null, or timeout, connection refused, connection reset, dns lookup failed, address not allowed, tls error: ... */
  error: string | null;
  durationMs: number;
  /** Retry-After of a 429 or 503, in ms from the answer, capped at MAX_RETRY_AFTER_MS. */
  retryAfterMs: number | null;
}

/** The connections of one instance: every address is checked at connect time (allowedLookup). */
export function webhookAgent(o: { allowPrivate: boolean; timeoutMs: number }): Agent {
  return new Agent({
    connect: { lookup: allowedLookup(o.allowPrivate), timeout: o.timeoutMs },
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
    keepAliveTimeout: 4_000,
  });
}

/** The webhook-signature header: `v1,<sig>` by each secret, space-separated (the newest first). */
export function signatures(secrets: string[], eventId: string, at: Date, body: string): string {
  return secrets.map((secret) => new Webhook(secret).sign(eventId, at, body)).join(' ');
}

/** Retry-After as seconds or an HTTP date, in ms from `nowMs`; null when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined, nowMs: number): number | null {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return null;
  // an HTTP date starts with the day's name (RFC 9110, 5.6.7); Date.parse alone would read "1.5" as a date
  const ms = /^[0-9]+$/.test(text)
    ? Number(text) * 1000
    : /^[A-Za-z]{3}/.test(text)
      ? Date.parse(text) - nowMs
      : Number.NaN;
  if (Number.isNaN(ms)) return null;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|ERR_OSSL_)/;

/** The delivery log's word for why an attempt got no answer: Node's and undici's codes, mapped. */
export function attemptError(error: unknown, timedOut: boolean): string {
  if (timedOut) return 'timeout';
  for (let e = error as { code?: string; name?: string; message?: string; cause?: unknown } | undefined; e;) {
    const code = e.code ?? '';
    if (code === ADDRESS_NOT_ALLOWED) return 'address not allowed';
    if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'connection refused';
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME' || code === 'EAI_FAIL')
      return 'dns lookup failed';
    if (
      code === 'UND_ERR_CONNECT_TIMEOUT' ||
      code === 'UND_ERR_HEADERS_TIMEOUT' ||
      code === 'ETIMEDOUT' ||
      e.name === 'TimeoutError'
    )
      return 'timeout';
    if (TLS_CODES.test(code)) return `tls error: ${e.message ?? code}`;
    if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED')
      return 'connection reset';
    e = e.cause as typeof e;
  }
  // anything else ended the connection before a status line came
  return 'connection reset';
}

/** One attempt: sends the body signed by each secret, reads the status line, drops the answer. */
export async function sendWebhook(
  agent: Agent,
  o: { url: string; eventId: string; body: string; secrets: string[]; timeoutMs: number; allowPrivate: boolean },
): Promise<SendResult> {
  const started = Date.now();
  // a host given as an address is connected to without a lookup, so allowedLookup never sees it
  const host = new URL(o.url).hostname.replace(/^\[(.*)\]$/, '$1');
  if (!o.allowPrivate && isIP(host) !== 0 && !isPublicAddress(host))
    return {
      attemptedAt: new Date(started).toISOString(),
      statusCode: null,
      error: 'address not allowed',
      durationMs: 0,
      retryAfterMs: null,
    };
  // webhook-timestamp is in seconds, and so is the signed content
  const at = new Date(Math.floor(started / 1000) * 1000);
  const signal = AbortSignal.timeout(o.timeoutMs);
  const headers = {
    'content-type': 'application/json',
    'user-agent': USER_AGENT,
    'webhook-id': o.eventId,
    'webhook-timestamp': String(at.getTime() / 1000),
    'webhook-signature': signatures(o.secrets, o.eventId, at, o.body),
  };
  const attemptedAt = new Date(started).toISOString();
  try {
    const answer = await request(o.url, { method: 'POST', headers, body: o.body, dispatcher: agent, signal });
    const durationMs = Date.now() - started;
    const statusCode = answer.statusCode;
    const retryAfter =
      statusCode === 429 || statusCode === 503 ? retryAfterMs(answer.headers['retry-after'], Date.now()) : null;
    let read = 0;
    try {
      for await (const chunk of answer.body) {
        read += (chunk as Buffer).length;
        if (read >= MAX_ANSWER_BYTES) break;
      }
    } catch {
      // the answer's body is dropped anyway: its status line decided
    } finally {
      answer.body.destroy();
    }
    return { attemptedAt, statusCode, error: null, durationMs, retryAfterMs: retryAfter };
  } catch (error) {
    return {
      attemptedAt,
      statusCode: null,
      error: attemptError(error, signal.aborted),
      durationMs: Date.now() - started,
      retryAfterMs: null,
    };
  }
}

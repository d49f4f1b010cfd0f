import type { Readable } from 'node:stream';
import { request, type Dispatcher } from 'undici';

// The one HTTP client of the tests and the check scripts: a request to the service, its answer read
// whole, as JSON when it is JSON. Load generators that measure throughput (scripts/bench/) keep their
// own pool and read only the status.

export type HttpMethod = Dispatcher.HttpMethod;

export interface HttpAnswer<T = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON of the answer, or its text when it is not JSON (undefined when empty). */
  body: T;
  /** The answer as received. */
  text: string;
}

export interface HttpRequestOptions {
  /** A value sent as JSON with content type application/json; a string or Buffer is the JSON text itself. */
  json?: unknown;
  /** A body sent exactly as given, with no content type added. */
  body?: string | Buffer | Readable;
  /** Headers of the request; a content-type here wins over the one `json` adds. */
  headers?: Record<string, string>;
  /** undici's global agent when not given. */
  dispatcher?: Dispatcher;
  /** How long to wait for the headers, then for the body. */
  timeoutMs?: number;
}

/** Parsed JSON, or the text itself when it is not JSON; undefined for an empty text. */
export function parseJsonOrText(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return text;
  }
}

/** One request; throws when no answer comes (connection refused or reset, timeout). */
export async function httpRequest<T = unknown>(
  baseUrl: string,
  method: HttpMethod,
  path: string,
  options: HttpRequestOptions = {},
): Promise<HttpAnswer<T>> {
  const { json, headers = {}, dispatcher, timeoutMs } = options;
  const res = await request(`${baseUrl}${path}`, {
    method,
    dispatcher,
    headers: json === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body:
      json === undefined
        ? options.body
        : typeof json === 'string' || Buffer.isBuffer(json)
          ? json
          : JSON.stringify(json),
    ...(timeoutMs === undefined ? {} : { headersTimeout: timeoutMs, bodyTimeout: timeoutMs }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: parseJsonOrText(text) as T, text };
}

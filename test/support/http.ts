import type { Readable } from 'node:stream';
import { Agent } from 'undici';
import { httpRequest, type HttpAnswer, type HttpMethod } from '../../scripts/lib/http.js';

// The tests' way to the service under test, through the one HTTP client (scripts/lib/http.ts). The
// body of an answer is `any` unless a test names its type: tests read into whatever the server answered.

/** Many connections, so that the concurrency tests are not held up by the client. */
const agent = new Agent({ connections: 128, pipelining: 1 });

export type HttpResult<T = any> = HttpAnswer<T>;

/** One HTTP request; a JSON body when given, parsed JSON back (or the text when it is not JSON). */
export const http = <T = any>(
  baseUrl: string,
  method: HttpMethod,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpResult<T>> => httpRequest<T>(baseUrl, method, path, { json: body, headers, dispatcher: agent });

export const post = <T = any>(baseUrl: string, body: unknown) => http<T>(baseUrl, 'POST', '/api/appointments', body);

/** A request exactly as given: no content type is added, the body is sent as it is. */
export const raw = <T = any>(
  baseUrl: string,
  method: HttpMethod,
  path: string,
  body?: string | Buffer | Readable,
  headers: Record<string, string> = {},
): Promise<HttpResult<T>> => httpRequest<T>(baseUrl, method, path, { body, headers, dispatcher: agent });

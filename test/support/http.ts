import net from 'node:net';
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

/**
 * A POST of `size` bytes with a Content-Length and no `Expect`, written through a plain socket in 64 KiB
 * chunks a few milliseconds apart, the way a client on a real network uploads without waiting for an
 * early answer. Resolves with what the client could read back, and the socket error that cut it off, if any.
 */
export function uploadRaw(
  baseUrl: string,
  path: string,
  size: number,
): Promise<{ status: number; headers: string; body: string; error?: string; sentBeforeAnswer: number }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve) => {
    // half open: like an HTTP client that writes its whole body before it reads, it goes on writing after the server's FIN
    const socket = net.connect({ port: Number(port), host: hostname, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let sentBeforeAnswer = -1;
    socket.on('data', (chunk) => {
      if (sentBeforeAnswer === -1) sentBeforeAnswer = written;
      chunks.push(chunk);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
        headers: split === -1 ? text : text.slice(0, split),
        body: split === -1 ? '' : text.slice(split + 4),
        error,
        sentBeforeAnswer,
      });
    });
    socket.setTimeout(20_000, () => socket.destroy(new Error('no answer in 20 s')));
    socket.write(
      `POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${size}\r\nConnection: close\r\n\r\n`,
    );
    const chunk = Buffer.alloc(64 * 1024, ' ');
    let sent = 0;
    let written = 0;
    const pump = () => {
      if (socket.destroyed) return;
      if (sent >= size) return void socket.end();
      const part = size - sent >= chunk.length ? chunk : chunk.subarray(0, size - sent);
      sent += part.length;
      socket.write(part, (e) => {
        if (e) return;
        written += part.length;
        setTimeout(pump, 2);
      });
    };
    pump();
  });
}

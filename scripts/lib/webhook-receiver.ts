import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';

// A webhook receiver on 127.0.0.1 for the tests and scripts/check-webhooks.ts (no vitest here): it
// records every request it gets and answers as `respond` says.

export interface ReceivedRequest {
  /** The webhook-id header. */
  id: string;
  timestamp: string;
  signature: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Date.now() when the request arrived, and when it was answered (or dropped). */
  receivedAt: number;
  answeredAt?: number;
  /** The status answered; 0 when the connection was dropped or the server closed first. */
  status: number;
}

export interface Answer {
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /** Waits this long before answering. */
  delayMs?: number;
  /** Destroys the connection instead of answering. */
  drop?: boolean;
}

export interface Receiver {
  url: string;
  requests: ReceivedRequest[];
  /** How each request is answered: by default 204. `n` counts the requests of the same webhook-id, from 1. */
  respond: (request: ReceivedRequest, n: number) => Answer;
  /** Requests being answered now, and the most there were at once. */
  inFlight: number;
  maxInFlight: number;
  /** Resolves once `predicate` holds for the requests received, or rejects after `timeoutMs`. */
  waitFor(predicate: (requests: ReceivedRequest[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(port = 0): Promise<Receiver> {
  const perId = new Map<string, number>();
  const sockets = new Set<Socket>();
  const receiver: Receiver = {
    url: '',
    requests: [],
    respond: () => ({ status: 204 }),
    inFlight: 0,
    maxInFlight: 0,
    async waitFor(predicate, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(receiver.requests)) {
        if (Date.now() > deadline)
          throw new Error(
            `the receiver's condition did not hold within ${timeoutMs} ms (${receiver.requests.length} requests)`,
          );
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const header = (name: string) => String(req.headers[name] ?? '');
      const record: ReceivedRequest = {
        id: header('webhook-id'),
        timestamp: header('webhook-timestamp'),
        signature: header('webhook-signature'),
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        receivedAt: Date.now(),
        status: 0,
      };
      receiver.requests.push(record);
      const n = (perId.get(record.id) ?? 0) + 1;
      perId.set(record.id, n);
      const answer = receiver.respond(record, n);
      receiver.inFlight++;
      receiver.maxInFlight = Math.max(receiver.maxInFlight, receiver.inFlight);
      const finish = () => {
        receiver.inFlight--;
        record.answeredAt = Date.now();
        if (answer.drop) return void req.socket.destroy();
        record.status = answer.status ?? 204;
        res.writeHead(record.status, answer.headers);
        res.end(answer.body);
      };
      if (answer.delayMs) setTimeout(finish, answer.delayMs);
      else finish();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return receiver;
}

/** Whether the request verifies with the secret by the Standard Webhooks library. */
export function verifies(secret: string, request: ReceivedRequest): boolean {
  try {
    new Webhook(secret).verify(request.body, {
      'webhook-id': request.id,
      'webhook-timestamp': request.timestamp,
      'webhook-signature': request.signature,
    });
    return true;
  } catch {
    return false;
  }
}

import { request, type Dispatcher } from 'undici';
import { parseJsonOrText } from './http.js';

// Server-sent events as a browser's EventSource reads them (the HTML standard, "Parsing an event
// stream"), for the tests, the checks and the benchmark: a parser of the text, and a client that
// opens a stream and hands out what arrives, one item at a time.

export type SseItem =
  /** A dispatched event: `id` is the last event id as EventSource would report it (it persists). */
  | { type: 'event'; id: string; event: string; data: string }
  /** A line starting with a colon (EventSource ignores it; a heartbeat is one). */
  | { type: 'comment'; text: string }
  /** A valid `retry:` field: the reconnection time, in ms. */
  | { type: 'retry'; ms: number };

/** Feed it the stream's text as it arrives (decoded as UTF-8); each call returns the items it completed. */
export class SseParser {
  private rest = '';
  private started = false;
  /** The last chunk ended with CR: an LF at the start of the next one belongs to that line end. */
  private afterCr = false;
  private eventType = '';
  private data = '';
  /** The "last event ID buffer": kept from one event to the next until an `id:` field changes it. */
  lastEventId = '';

  push(text: string): SseItem[] {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.afterCr && text.startsWith('\n')) text = text.slice(1);
    this.afterCr = text.endsWith('\r');
    const lines = (this.rest + text).split(/\r\n|\r|\n/);
    // the last piece has no line end yet (an empty string when the text ended with one)
    this.rest = lines.pop()!;
    const items: SseItem[] = [];
    for (const line of lines) this.line(line, items);
    return items;
  }

  private line(line: string, items: SseItem[]) {
    if (line === '') {
      // dispatch: an event with no data is no event, but its type and data buffers are reset
      if (this.data !== '')
        items.push({
          type: 'event',
          id: this.lastEventId,
          event: this.eventType || 'message',
          data: this.data.endsWith('\n') ? this.data.slice(0, -1) : this.data,
        });
      this.data = '';
      this.eventType = '';
      return;
    }
    if (line.startsWith(':')) {
      items.push({ type: 'comment', text: line.slice(1).replace(/^ /, '') });
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') this.eventType = value;
    else if (field === 'data') this.data += `${value}\n`;
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^[0-9]+$/.test(value)) items.push({ type: 'retry', ms: Number(value) });
    // any other field is ignored
  }
}

export interface EventStreamOptions {
  headers?: Record<string, string>;
  dispatcher?: Dispatcher;
  /** How long to wait for the status line and headers. */
  headersTimeoutMs?: number;
}

/** The end of a stream: by the server (clean, or cut: `error`), or by close(). */
export interface StreamEnd {
  type: 'end';
  error?: Error;
}

export interface EventStream {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** For an answer that is not a 200 event stream: its body, parsed as JSON when it is JSON. */
  body?: unknown;
  /** The next item (or the end), or throws after `timeoutMs`. */
  next(timeoutMs?: number): Promise<SseItem | StreamEnd>;
  /** The next event, skipping comments and retry fields; the end when the stream ends first. */
  nextEvent(timeoutMs?: number): Promise<Extract<SseItem, { type: 'event' }> | StreamEnd>;
  /** Every item received so far, in order. */
  readonly received: SseItem[];
  /** Resolves when the stream has ended, however it ended. */
  readonly ended: Promise<StreamEnd>;
  /** Ends the stream from the client's side (the connection is cut, as a closed browser tab does). */
  close(): void;
}

/**
 * GET `url` with `Accept: text/event-stream`, as EventSource would. A 200 text/event-stream answer is
 * read as it arrives; any other answer is read whole into `body`.
 */
export async function openEventStream(url: string, options: EventStreamOptions = {}): Promise<EventStream> {
  const abort = new AbortController();
  const res = await request(url, {
    method: 'GET',
    headers: { accept: 'text/event-stream', 'cache-control': 'no-cache', ...options.headers },
    dispatcher: options.dispatcher,
    signal: abort.signal,
    headersTimeout: options.headersTimeoutMs ?? 10_000,
    // a stream is quiet for as long as nothing changes
    bodyTimeout: 0,
  });
  const contentType = String(res.headers['content-type'] ?? '');
  const queue: Array<SseItem | StreamEnd> = [];
  const received: SseItem[] = [];
  let wake: (() => void) | undefined;
  const put = (item: SseItem | StreamEnd) => {
    queue.push(item);
    wake?.();
  };
  let ended: Promise<StreamEnd>;
  if (res.statusCode !== 200 || !contentType.startsWith('text/event-stream')) {
    const text = await res.body.text();
    ended = Promise.resolve({ type: 'end' });
    put({ type: 'end' });
    return {
      status: res.statusCode,
      headers: res.headers,
      body: parseJsonOrText(text),
      next: () => Promise.resolve({ type: 'end' }),
      nextEvent: () => Promise.resolve({ type: 'end' }),
      received,
      ended,
      close: () => {},
    };
  }
  const parser = new SseParser();
  let closedByClient = false;
  ended = (async (): Promise<StreamEnd> => {
    const decoder = new TextDecoder('utf-8');
    let end: StreamEnd = { type: 'end' };
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        for (const item of parser.push(decoder.decode(chunk, { stream: true }))) {
          received.push(item);
          put(item);
        }
      }
    } catch (error) {
      if (!closedByClient) end = { type: 'end', error: error as Error };
    }
    put(end);
    return end;
  })();

  const next = async (timeoutMs = 10_000): Promise<SseItem | StreamEnd> => {
    const deadline = Date.now() + timeoutMs;
    while (queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`nothing arrived on the event stream within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    const item = queue[0]!;
    // the end stays in the queue: every later call sees it too
    if (item.type !== 'end') queue.shift();
    return item;
  };
  return {
    status: res.statusCode,
    headers: res.headers,
    next,
    async nextEvent(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const item = await next(Math.max(1, deadline - Date.now()));
        if (item.type === 'event' || item.type === 'end') return item;
      }
    },
    received,
    ended,
    close() {
      closedByClient = true;
      abort.abort();
    },
  };
}

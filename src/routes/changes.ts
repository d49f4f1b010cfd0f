import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FeedEntry, FeedRead } from '../change-feed.js';
import { badRequest, isDatabaseUnavailable } from '../errors.js';
import { DEFAULT_ORG_ID, EXAMPLE_UPDATED_APPOINTMENT } from '../schemas/appointments.js';
import { APPLY_RULE, ChangesPage, ChangesQuery, DEFAULT_CHANGES_LIMIT, StreamQuery } from '../schemas/changes.js';
import { errorResponses } from '../schemas/errors.js';
import type { FeedPlace } from '../sync-tokens.js';

const tags = ['changes'];

// How long a stream waits before it reads again when the database was away.
const STREAM_RETRY_MS = 1_000;
// A stream reads pages of at most this many changes.
const STREAM_PAGE = 500;
const LAST_EVENT_ID = /^[A-Za-z0-9_-]{1,2048}\.[A-Za-z0-9_-]{1,100}$/;

const examplePage = {
  changes: [
    {
      type: 'upsert',
      id: '1',
      version: 2,
      recordedAt: EXAMPLE_UPDATED_APPOINTMENT.recordedAt,
      appointment: EXAMPLE_UPDATED_APPOINTMENT,
    },
    { type: 'delete', id: '7', version: 3, recordedAt: '2026-11-22T14:07:00.000001Z' },
  ],
  next: 'eyJmIjoiZmVlZCIsIm8iOiJleGFtcGxlIiwieCI6Ijc0MSIsInMiOiI5MDEifQ.c2lnbmF0dXJlLW9mLXRoZS1wYXlsb2Fk',
  more: false,
} satisfies ChangesPage;

/** The text of one change's event; an entry read once for many streams is formatted once for all of them. */
const eventTexts = new WeakMap<FeedEntry, string>();
function eventText(entry: FeedEntry): string {
  let text = eventTexts.get(entry);
  if (text === undefined) {
    text = `id: ${entry.token}\nevent: ${entry.change.type}\ndata: ${JSON.stringify(entry.change)}\n\n`;
    eventTexts.set(entry, text);
  }
  return text;
}

export const changeRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const feed = app.changeFeed;
  const heartbeatMs = feed.heartbeatMs;

  app.get(
    '',
    {
      schema: {
        operationId: 'listChanges',
        tags,
        summary: "The organization's changes since a token: pull, or long-poll with `wait`",
        description: `Follow \`next\` until \`more\` is false; store it, and come back later (or long-poll with \`wait\`). ${APPLY_RULE}`,
        querystring: ChangesQuery,
        response: {
          200: Type.Ref(ChangesPage, { description: 'A page of changes', examples: [examplePage] }),
          ...errorResponses(400, 410, 503),
        },
      },
    },
    async (request, reply) => {
      const { orgId = DEFAULT_ORG_ID, since, limit = DEFAULT_CHANGES_LIMIT, wait = 0 } = request.query;
      const from = since === undefined ? undefined : { token: since, place: await feed.placeOf(orgId, since) };
      const deadline = Date.now() + wait * 1000;
      let page = await feed.read(orgId, from, limit);
      // Long-poll: nothing ready yet, so wait for a change of the org (or the deadline, or shutdown).
      const abort = new AbortController();
      // the client went away: stop waiting for it
      reply.raw.once('close', () => abort.abort());
      if (wait > 0) app.metrics.feedLongPolls.inc();
      try {
        while (page.entries.length === 0 && Date.now() < deadline && !feed.isClosed) {
          const waitFrom = { token: page.next, place: page.place };
          if (!(await feed.waitForChange(orgId, page.place, deadline - Date.now(), abort.signal))) break;
          page = await feed.read(orgId, waitFrom, limit);
        }
      } finally {
        if (wait > 0) app.metrics.feedLongPolls.dec();
      }
      return { changes: page.entries.map((e) => e.change), next: page.next, more: page.more };
    },
  );

  app.get(
    '/stream',
    {
      schema: {
        operationId: 'streamChanges',
        tags,
        summary: "The organization's changes as server-sent events",
        description:
          'One event per change: `id:` the token after it, `event: upsert|delete`, `data:` the change as JSON. ' +
          'A reconnecting client sends `Last-Event-ID` (it wins over `since`) and goes on exactly after it; a ' +
          'malformed or foreign one is a 400 before the stream starts. A comment line every 15 s keeps the ' +
          `stream open; it ends on shutdown, and the client reconnects. ${APPLY_RULE}`,
        querystring: StreamQuery,
        headers: Type.Object({
          'last-event-id': Type.Optional(
            Type.String({ description: 'The id of the last event received: resume after it.' }),
          ),
        }),
        produces: ['text/event-stream'],
        response: {
          200: Type.String({
            description: 'An event stream (text/event-stream), open until the client or the service ends it',
            contentMediaType: 'text/event-stream',
          }),
          ...errorResponses(400, 410, 503),
        },
      },
    },
    async (request, reply) => {
      const raw = reply.raw;
      // before anything is awaited: a client that leaves while the first page is read is noticed too
      const abort = new AbortController();
      raw.once('close', () => abort.abort());
      const { orgId = DEFAULT_ORG_ID } = request.query;
      const lastEventId = request.headers['last-event-id'];
      const resumeFrom = typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : request.query.since;
      const what = resumeFrom === request.query.since ? 'querystring/since' : 'headers/last-event-id';
      if (resumeFrom !== undefined && !LAST_EVENT_ID.test(resumeFrom))
        throw badRequest(`${what} is not a change-feed token; sync again without it`);
      let from =
        resumeFrom === undefined
          ? undefined
          : { token: resumeFrom, place: await feed.placeOf(orgId, resumeFrom, what) };
      // The first page before the status line: a token beyond the feed is still a 410, not a broken
      // stream. When the database is away, the token has passed every check but that one: the stream
      // starts and reads once the database is back (a 503 would end an EventSource for good; a 410
      // found then ends the stream, and the reconnection gets it).
      let page: FeedRead | undefined;
      try {
        page = await feed.read(orgId, from, STREAM_PAGE);
      } catch (error) {
        if (!isDatabaseUnavailable(error)) throw error;
      }

      reply.hijack();
      if (abort.signal.aborted || raw.destroyed) return;
      raw.writeHead(200, {
        ...(reply.getHeaders() as Record<string, string>),
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
      });
      const ended = () => abort.signal.aborted || feed.isClosed;
      let lastWrite = Date.now();
      const write = async (text: string) => {
        lastWrite = Date.now();
        if (raw.write(text) || abort.signal.aborted) return;
        // a slow client: wait until its socket takes more, or it leaves
        await new Promise<void>((resolve) => {
          const done = () => {
            raw.off('drain', done);
            abort.signal.removeEventListener('abort', done);
            resolve();
          };
          raw.on('drain', done);
          abort.signal.addEventListener('abort', done);
        });
      };
      let failures = 0;
      app.metrics.feedStreams.inc();
      try {
        await write('retry: 1000\n\n');
        for (;;) {
          if (page === undefined) {
            try {
              page = await feed.read(orgId, from, STREAM_PAGE);
              failures = 0;
            } catch (error) {
              // The database is away (a restart, a failover): the stream stays open and tries again, so
              // that its client neither reconnects into a 503, which ends an EventSource for good, nor
              // misses anything. Any other error ends the stream.
              if (!isDatabaseUnavailable(error)) throw error;
              if (failures++ === 0) request.log.warn({ err: error }, 'change stream waits for the database');
              if (!(await feed.sleep(STREAM_RETRY_MS, abort.signal))) return;
              if (Date.now() - lastWrite >= heartbeatMs) await write(': keep-alive\n\n');
              continue;
            }
          }
          for (const entry of page.entries) {
            if (ended()) return;
            await write(eventText(entry));
          }
          from = { token: page.next, place: page.place };
          const waitFrom: FeedPlace = page.place;
          const more = page.more;
          page = undefined;
          if (more) continue;
          while (!ended()) {
            if (await feed.waitForChange(orgId, waitFrom, heartbeatMs, abort.signal)) break;
            if (!ended()) await write(': keep-alive\n\n');
          }
          if (ended()) return;
        }
      } catch (error) {
        // the status line is sent: the stream can only end; the client reconnects with Last-Event-ID
        request.log.warn({ err: error }, 'change stream ended by an error');
      } finally {
        app.metrics.feedStreams.dec();
        // hijacked: Fastify's onResponse hooks never see it
        app.metrics.answered(request, 200, reply.elapsedTime / 1000);
        if (!raw.destroyed) raw.end();
      }
    },
  );
};

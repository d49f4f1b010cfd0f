import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FeedRead } from '../change-feed.js';
import { badRequest } from '../errors.js';
import { DEFAULT_ORG_ID } from '../schemas/appointments.js';
import { APPLY_RULE, ChangesPage, ChangesQuery, DEFAULT_CHANGES_LIMIT, StreamQuery } from '../schemas/changes.js';
import { errorResponses } from '../schemas/errors.js';
import type { FeedPlace } from '../sync-tokens.js';

const tags = ['changes'];

// A comment line this often keeps proxies and load balancers from closing an idle stream.
export const STREAM_HEARTBEAT_MS = 15_000;
// A stream reads pages of at most this many changes.
const STREAM_PAGE = 500;
const LAST_EVENT_ID = /^[A-Za-z0-9_-]{1,2048}\.[A-Za-z0-9_-]{1,100}$/;

const examplePage = {
  changes: [
    {
      type: 'upsert',
      id: '1',
      version: 2,
      recordedAt: '2026-11-22T14:06:10.654321Z',
      appointment: {
        id: '1',
        orgId: 'example',
        start: '2020-10-10T20:20:00.000Z',
        end: '2020-10-10T20:45:00.000Z',
        createdAt: '2020-09-02T14:23:12.000Z',
        updatedAt: '2020-09-29T09:00:00.000Z',
        version: 2,
        recordedAt: '2026-11-22T14:06:10.654321Z',
      },
    },
    { type: 'delete', id: '7', version: 3, recordedAt: '2026-11-22T14:07:00.000001Z' },
  ],
  next: 'eyJmIjoiZmVlZCIsIm8iOiJleGFtcGxlIiwieCI6Ijc0MSIsInMiOiI5MDEifQ.c2lnbmF0dXJlLW9mLXRoZS1wYXlsb2Fk',
  more: false,
} satisfies ChangesPage;

export const changeRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const feed = app.changeFeed;

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
      while (page.entries.length === 0 && Date.now() < deadline && !feed.isClosed) {
        const waitFrom = { token: page.next, place: page.place };
        if (!(await feed.waitForChange(orgId, page.place, deadline - Date.now(), abort.signal))) break;
        page = await feed.read(orgId, waitFrom, limit);
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
      // the first page before the status line: a token beyond the feed is still a 410, not a broken stream
      let page: FeedRead | undefined = await feed.read(orgId, from, STREAM_PAGE);

      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        ...(reply.getHeaders() as Record<string, string>),
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
      });
      const abort = new AbortController();
      raw.once('close', () => abort.abort());
      const write = async (text: string) => {
        if (!raw.write(text)) await new Promise((resolve) => raw.once('drain', resolve).once('close', resolve));
      };
      try {
        await write('retry: 1000\n\n');
        for (;;) {
          if (page === undefined) page = await feed.read(orgId, from, STREAM_PAGE);
          for (const { change, token } of page.entries) {
            if (abort.signal.aborted) return;
            await write(`id: ${token}\nevent: ${change.type}\ndata: ${JSON.stringify(change)}\n\n`);
          }
          from = { token: page.next, place: page.place };
          const waitFrom: FeedPlace = page.place;
          const more = page.more;
          page = undefined;
          if (more) continue;
          while (!abort.signal.aborted && !feed.isClosed) {
            if (await feed.waitForChange(orgId, waitFrom, STREAM_HEARTBEAT_MS, abort.signal)) break;
            if (!abort.signal.aborted && !feed.isClosed) await write(': keep-alive\n\n');
          }
          if (abort.signal.aborted || feed.isClosed) return;
        }
      } catch (error) {
        // the status line is sent: the stream can only end; the client reconnects with Last-Event-ID
        request.log.warn({ err: error }, 'change stream ended by an error');
      } finally {
        raw.end();
      }
    },
  );
};

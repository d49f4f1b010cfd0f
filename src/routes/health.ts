import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { schemaState } from '../db/migrations.js';

const Status = Type.Object({ status: Type.String(), reason: Type.Optional(Type.String()) });
// Probes need no key, whatever AUTH says.
const security: Array<Record<string, string[]>> = [];
const READY_TIMEOUT_MS = 2_000;

export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/health',
    {
      schema: {
        operationId: 'getHealth',
        tags: ['health'],
        summary: 'The process is running',
        description: 'Liveness: answers without asking the database.',
        security,
        response: { 200: { ...Status, description: 'Running', examples: [{ status: 'ok' }] } },
      },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/ready',
    {
      schema: {
        operationId: 'getReadiness',
        tags: ['health'],
        summary: 'The database answers and its migrations and functions are current',
        description: 'Readiness: 503 while the service cannot serve the API.',
        security,
        response: {
          200: { ...Status, description: 'Ready', examples: [{ status: 'ready' }] },
          503: {
            ...Status,
            description: 'Not ready; `reason` says why',
            examples: [{ status: 'unavailable', reason: 'database unavailable' }],
          },
        },
      },
    },
    async (request, reply) => {
      if (app.isDraining()) return reply.code(503).send({ status: 'unavailable', reason: 'shutting down' });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the database did not answer in time')), READY_TIMEOUT_MS);
      });
      try {
        const state = await Promise.race([schemaState(app.sql), timeout]);
        if (state.pendingMigrations.length > 0)
          return reply.code(503).send({ status: 'unavailable', reason: 'migrations pending' });
        // neither this release's functions nor those of the release just before or after it
        if (state.functions === 'other')
          return reply.code(503).send({ status: 'unavailable', reason: 'database functions differ' });
        return { status: 'ready' };
      } catch (error) {
        request.log.warn({ err: error }, 'not ready');
        return reply.code(503).send({ status: 'unavailable', reason: 'database unavailable' });
      } finally {
        clearTimeout(timer);
      }
    },
  );
};

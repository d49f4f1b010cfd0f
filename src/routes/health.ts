import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { schemaState } from '../db/migrations.js';

const Status = Type.Object({ status: Type.String(), reason: Type.Optional(Type.String()) });
const READY_TIMEOUT_MS = 2_000;

export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/health',
    { schema: { tags: ['health'], summary: 'The process is running', response: { 200: Status } } },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/ready',
    {
      schema: {
        tags: ['health'],
        summary: 'The database answers and its migrations and functions are current',
        response: { 200: Status, 503: Status },
      },
    },
    async (request, reply) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the database did not answer in time')), READY_TIMEOUT_MS);
      });
      try {
        const state = await Promise.race([schemaState(app.sql), timeout]);
        if (state.pendingMigrations.length > 0)
          return reply.code(503).send({ status: 'unavailable', reason: 'migrations pending' });
        // another release's functions (applied by a newer instance, or not yet by this one's migrate)
        if (!state.functionsCurrent)
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

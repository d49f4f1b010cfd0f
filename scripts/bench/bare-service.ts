// The bare implementation the benchmark measures the service against (issue 16): Fastify with a TypeBox
// schema and postgres.js, serving POST /api/appointments with the service's own write (upsertAppointment
// of src/db/appointments.ts), and nothing else: no logging, no security headers, no rate limit, no
// metrics, no ETag, no draining. With BARE_GATE=1 its pool is the service's bounded one (one statement
// a connection, a bounded line), otherwise postgres.js's own, which pipelines queries onto busy
// connections. What it costs over the limit is what HTTP itself costs on this machine; what the service
// costs over it is the service's own per-request work.
// Started as a child process by run.ts: DATABASE_URL, PORT, DB_POOL_MAX, BARE_GATE.
import Fastify from 'fastify';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { boundedPool, createSql, POOL_MAX_WAITING, POOL_WAIT_TIMEOUT_MS } from '../../src/db/client.js';
import { AppointmentOverlapError, upsertAppointment } from '../../src/db/appointments.js';

const poolMax = Number(process.env.DB_POOL_MAX ?? 10);
const pool = createSql({ databaseUrl: process.env.DATABASE_URL!, poolMax }, true);
const sql =
  process.env.BARE_GATE === '1'
    ? boundedPool(pool, { max: poolMax, maxWaiting: POOL_MAX_WAITING, waitTimeoutMs: POOL_WAIT_TIMEOUT_MS })
    : pool;

const Time = Type.String({ format: 'date-time' });
const Write = Type.Object({
  id: Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Integer()]),
  orgId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  start: Time,
  end: Time,
  createdAt: Time,
  updatedAt: Time,
});
const Stored = Type.Object({
  id: Type.String(),
  orgId: Type.String(),
  start: Type.String(),
  end: Type.String(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  version: Type.Integer(),
});

const app = Fastify({ logger: false }).withTypeProvider<TypeBoxTypeProvider>();
app.post(
  '/api/appointments',
  { schema: { body: Write, response: { 200: Stored, 201: Stored, 409: Type.Object({ error: Type.String() }) } } },
  async (request, reply) => {
    const b = request.body;
    try {
      const { status, appointment } = await upsertAppointment(sql, {
        orgId: b.orgId ?? 'default',
        id: String(b.id),
        start: new Date(b.start).toISOString(),
        end: new Date(b.end).toISOString(),
        createdAt: new Date(b.createdAt).toISOString(),
        updatedAt: new Date(b.updatedAt).toISOString(),
      });
      return reply.code(status === 'created' ? 201 : 200).send(appointment);
    } catch (error) {
      if (error instanceof AppointmentOverlapError) return reply.code(409).send({ error: 'OVERLAP' });
      throw error;
    }
  },
);
app.get('/ready', async () => ({ ready: true }));

await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
process.once('SIGTERM', () => {
  void app
    .close()
    .then(() => pool.end({ timeout: 5 }))
    .then(() => process.exit(0));
});

import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv, type Options as AjvOptions, type ValidateFunction } from 'ajv';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { databasePlugin } from './db/client.js';
import { answerFrameworkError, registerErrorHandlers } from './errors.js';
import { appointmentRoutes } from './routes/appointments.js';
import { healthRoutes } from './routes/health.js';
import { Appointment, HistoryEntry, WriteResult } from './schemas/appointments.js';
import { ErrorResponse } from './schemas/errors.js';
import { parseTime, SYSTEM_TIME_FORMAT, TIME_FORMAT } from './schemas/time.js';

export interface AppOptions {
  databaseUrl: string;
  dbPoolMax: number;
  logger: FastifyBaseLogger;
}

export const BODY_LIMIT = 1024 * 1024;

function buildAjv(options: AjvOptions): Ajv {
  const ajv = new Ajv({ useDefaults: true, removeAdditional: false, allErrors: false, strict: false, ...options });
  ajv.addFormat(TIME_FORMAT, { type: 'string', validate: (value: string) => parseTime(value, 3) !== null });
  ajv.addFormat(SYSTEM_TIME_FORMAT, { type: 'string', validate: (value: string) => parseTime(value, 6) !== null });
  return ajv;
}

/**
 * Ajv's coercion reads "0x10", "1e2" and " 7" as numbers; in a query string or a path an integer
 * must be written in digits.
 */
function digitsOnlyIntegers(schema: unknown, validate: ValidateFunction): ValidateFunction {
  const properties = (schema as { properties?: Record<string, { type?: string }> }).properties ?? {};
  const integers = Object.keys(properties).filter((key) => properties[key]!.type === 'integer');
  if (integers.length === 0) return validate;
  const strict = ((data: Record<string, unknown>) => {
    const bad = integers.find((key) => typeof data[key] === 'string' && !/^[0-9]{1,15}$/.test(data[key] as string));
    if (bad !== undefined) {
      strict.errors = [{ keyword: 'type', instancePath: `/${bad}`, schemaPath: '', params: { type: 'integer' }, message: 'must be an integer written in digits' }];
      return false;
    }
    const valid = validate(data);
    strict.errors = validate.errors;
    return valid;
  }) as ValidateFunction;
  return strict;
}

/** The whole service, as the server, the tests and the scripts run it. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: BODY_LIMIT,
    // ids are at most 128 characters; longer ones reach validation and get a 400 that says why
    routerOptions: { maxParamLength: 2048 },
    frameworkErrors: answerFrameworkError,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are taken as they are: no type coercion (`1.5` is not the id "1.5"), no silent removal of
  // unknown properties. Query strings and path parameters are text, so there numbers are coerced.
  const bodyAjv = buildAjv({ coerceTypes: false });
  const paramAjv = buildAjv({ coerceTypes: true });
  for (const schema of [Appointment, HistoryEntry, WriteResult, ErrorResponse]) {
    app.addSchema(schema);
    bodyAjv.addSchema(schema);
    paramAjv.addSchema(schema);
  }
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body' ? bodyAjv.compile(schema) : digitsOnlyIntegers(schema, paramAjv.compile(schema)),
  );

  // JSON only: Fastify would otherwise also accept text/plain bodies.
  app.removeContentTypeParser('text/plain');

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  registerErrorHandlers(app);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Appointments service',
        version: '0.1.0',
        description:
          'Create-or-update appointments; overlaps within an organization are refused atomically; every version is kept; point-in-time reads.',
      },
      tags: [{ name: 'appointments' }, { name: 'health' }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs' });

  await app.register(databasePlugin, { databaseUrl: options.databaseUrl, poolMax: options.dbPoolMax });
  await app.register(healthRoutes);
  await app.register(appointmentRoutes, { prefix: '/api/appointments' });
  return app;
}

import type { TSchema } from '@sinclair/typebox';
import { RequestIdHeader } from './headers.js';

/*
 * What the OpenAPI document needs beyond the schemas that validate and serialize: response headers and
 * examples per status. @fastify/swagger reads a response schema's `headers` (name -> schema); the serializer
 * ignores the keyword.
 */

type ResponseSchema = TSchema & {
  headers?: Record<string, TSchema>;
  examples?: unknown[];
  'x-examples'?: Record<string, { summary?: string; value: unknown }>;
};

/** A copy of a response schema with more headers declared; the schema itself is left alone (it may be shared). */
export function withHeaders<T extends TSchema>(schema: T, headers: Record<string, TSchema>): T {
  const existing = (schema as ResponseSchema).headers ?? {};
  return { ...schema, headers: { ...existing, ...headers } };
}

/** A route schema with more headers declared on each of its responses but those of the `except` statuses. */
export function declareHeaders<T extends { response?: unknown } | undefined>(
  schema: T,
  headers: Record<string, TSchema>,
  except: string[] = [],
): T {
  if (schema?.response === undefined) return schema;
  const response = schema.response as Record<string, TSchema>;
  const declared = Object.entries(response).map(([status, s]) => [
    status,
    except.includes(status) ? s : withHeaders(s, headers),
  ]);
  return { ...schema, response: Object.fromEntries(declared) };
}

/**
 * @fastify/swagger drops everything beside a `$ref`, the examples of a `Type.Ref(X, { examples })` response
 * included; written as a media type they stay (`x-examples`: named ones, shown as a choice in Swagger UI).
 */
function withExamplesKept(schema: ResponseSchema): TSchema {
  if (!('$ref' in schema) || (schema.examples === undefined && schema['x-examples'] === undefined)) return schema;
  const { examples, 'x-examples': named, description, headers, ...rest } = schema;
  const media = named ? { schema: rest, examples: named } : { schema: rest, example: examples![0] };
  return { description, headers, content: { 'application/json': media } } as unknown as TSchema;
}

/**
 * The swagger `transform`: runs when the document is generated, once every route is known (those that
 * auth and the rate limit extend included). Every answer carries the request id (an onRequest hook in app.ts).
 */
export function documentRoute<T extends { response?: unknown } | undefined>({
  schema,
  url,
}: {
  schema: T;
  url: string;
}) {
  const declared = declareHeaders(schema, { 'X-Request-Id': RequestIdHeader });
  if (declared?.response === undefined) return { schema: declared, url };
  const response = Object.entries(declared.response as Record<string, ResponseSchema>).map(([status, s]) => [
    status,
    withExamplesKept(s),
  ]);
  return { schema: { ...declared, response: Object.fromEntries(response) }, url };
}

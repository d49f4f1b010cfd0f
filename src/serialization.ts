import fastJson, { type Options, type Schema as FjsSchema } from 'fast-json-stringify';

type Schema = { [key: string]: unknown };

const isSchema = (value: unknown): value is Schema => typeof value === 'object' && value !== null;

/**
 * fast-json-stringify writes an `anyOf` by validating the value against each option with Ajv, in turn:
 * every change of a feed page was checked against UpsertChange, its appointment and time formats
 * included, before it was written. A union of objects that one property tells apart (a change's `type`,
 * a batch result's `status: 'rejected'`) is written as if/then/else on that property instead, which
 * compares one property: a page of 1,000 changes took 7.6 ms to serialize, now 1.7 (docs/performance.md,
 * "Unions in the answers"). The documents and the validators keep the anyOf.
 */
export function taggedUnionsAsConditions(schema: unknown, shared: Record<string, Schema>): unknown {
  if (Array.isArray(schema)) return schema.map((item) => taggedUnionsAsConditions(item, shared));
  if (!isSchema(schema)) return schema;
  const rewritten: Schema = {};
  for (const key of Reflect.ownKeys(schema)) {
    const value = schema[key as string];
    rewritten[key as string] =
      key === 'properties' && isSchema(value)
        ? Object.fromEntries(Object.entries(value).map(([name, s]) => [name, taggedUnionsAsConditions(s, shared)]))
        : key === 'items' || key === 'anyOf' || key === 'oneOf' || key === 'allOf'
          ? taggedUnionsAsConditions(value, shared)
          : value;
  }
  const options = rewritten.anyOf;
  if (!Array.isArray(options) || options.length < 2) return rewritten;
  const conditions = asConditions(options as Schema[], shared);
  if (conditions === undefined) return rewritten;
  const { anyOf: _, ...rest } = rewritten;
  return { ...rest, ...conditions };
}

/** The values a property's schema allows, when it names them all (a const, an enum, an anyOf of consts). */
function closedValues(schema: Schema | undefined): unknown[] | undefined {
  if (schema === undefined) return undefined;
  if (schema.const !== undefined) return [schema.const];
  if (Array.isArray(schema.enum)) return schema.enum as unknown[];
  if (Array.isArray(schema.anyOf) && (schema.anyOf as Schema[]).every((option) => option.const !== undefined))
    return (schema.anyOf as Schema[]).map((option) => option.const);
  return undefined;
}

/**
 * The options as if/then/else on the first property that every option requires and that tells them
 * apart: a constant in each but at most one, the last `else`, whose values are named and differ from them.
 */
function asConditions(options: Schema[], shared: Record<string, Schema>): Schema | undefined {
  const resolved = options.map((option) => (typeof option.$ref === 'string' ? shared[option.$ref] : option));
  if (resolved.some((option) => option?.type !== 'object' || !isSchema(option.properties))) return undefined;
  const propertyOf = (i: number, name: string) => (resolved[i]!.properties as Record<string, Schema>)[name];
  for (const name of Object.keys(resolved[0]!.properties as Schema)) {
    if (resolved.some((option) => !(option!.required as string[] | undefined)?.includes(name))) continue;
    const values = resolved.map((_, i) => closedValues(propertyOf(i, name)));
    if (values.some((v) => v === undefined)) continue;
    const tagged = options.map((_, i) => i).filter((i) => propertyOf(i, name)!.const !== undefined);
    const rest = options.map((_, i) => i).filter((i) => !tagged.includes(i));
    const all = values.flat();
    if (rest.length > 1 || new Set(all).size !== all.length) continue;
    const order = [...tagged, ...rest];
    return order.slice(0, -1).reduceRight<Schema>(
      (otherwise, i) => ({
        if: { type: 'object', properties: { [name]: { const: propertyOf(i, name)!.const } }, required: [name] },
        then: options[i],
        else: otherwise,
      }),
      options[order.at(-1)!]!,
    );
  }
  return undefined;
}

/**
 * Fastify's serializer factory (schemaController.compilersFactory.buildSerializer), as its default one
 * (@fastify/fast-json-stringify-compiler) builds it, with the response schemas and the shared ones
 * rewritten by taggedUnionsAsConditions.
 */
export function buildSerializer(externalSchemas?: unknown, options?: Options) {
  const external = (externalSchemas ?? {}) as Record<string, Schema>;
  const shared = Object.fromEntries(
    Object.entries(external).map(([id, schema]) => [id, taggedUnionsAsConditions(schema, external) as Schema]),
  );
  return (route: { schema?: unknown }): ((doc: unknown) => string) => {
    const schema = route.schema as Schema;
    const others = { ...shared };
    // a response schema that is itself shared must not be given twice
    if (typeof schema.$id === 'string') delete others[schema.$id];
    const rewritten = taggedUnionsAsConditions(schema, external) as FjsSchema;
    return fastJson(rewritten, { ...options, schema: others as unknown as Record<string, FjsSchema> });
  };
}

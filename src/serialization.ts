import fastJson, { type Options, type Schema as FjsSchema } from 'fast-json-stringify';

type Schema = { [key: string]: unknown };

const isSchema = (value: unknown): value is Schema => typeof value === 'object' && value !== null;

/**
 * fast-json-stringify writes an `anyOf` by validating the value against each option with Ajv, in turn:
 * every change of a feed page was checked against UpsertChange, its appointment and time formats
 * included, before it was written (7.0 ms of the 7.3 a page of 1,000 changes took to serialize; 1.3 ms
 * as below). A union of objects that one property with a constant value tells apart (a change's `type`,
 * a batch result's `status: 'rejected'`) is written as if/then/else on that property instead, which
 * compares one property. The documents and the validators keep the anyOf.
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

/** The options as if/then/else on the first property that all of them have and a constant tells apart. */
function asConditions(options: Schema[], shared: Record<string, Schema>): Schema | undefined {
  const resolved = options.map((option) => (typeof option.$ref === 'string' ? shared[option.$ref] : option));
  if (resolved.some((option) => option?.type !== 'object' || !isSchema(option.properties))) return undefined;
  const propertiesOf = (option: Schema | undefined) => option!.properties as Record<string, Schema>;
  for (const name of Object.keys(propertiesOf(resolved[0]))) {
    const constants = resolved.map((option) => propertiesOf(option)[name]?.const);
    if (resolved.some((option) => !(propertiesOf(option)[name] && (option!.required as string[])?.includes(name))))
      continue;
    // at most one option without a constant: it is the last `else`; the constants all differ
    const without = constants.filter((c) => c === undefined).length;
    if (without > 1 || new Set(constants.filter((c) => c !== undefined)).size !== constants.length - without) continue;
    const order = options
      .map((_, i) => i)
      .sort((a, b) => Number(constants[a] === undefined) - Number(constants[b] === undefined));
    return order.slice(0, -1).reduceRight<Schema>(
      (otherwise, i) => ({
        if: { type: 'object', properties: { [name]: { const: constants[i] } }, required: [name] },
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

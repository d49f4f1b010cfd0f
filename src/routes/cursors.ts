// The cursors of paged lists: two strings of the last row of a page (its sort key), as base64url JSON.
// What they must hold is each list's own check.

export function encodeCursor(key: [string, string]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

/** The pair a cursor holds, or undefined when it holds none. */
export function decodeCursor(cursor: string): [string, string] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  return Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string'
    ? [value[0], value[1]]
    : undefined;
}

import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ENV_NAMES } from '../src/config.js';

// The docs stay true where a test can tell: the configuration table names every setting, and only those.

describe('docs/operations.md', () => {
  it('lists every setting of src/config.ts in its configuration table, and no other', async () => {
    const text = await readFile(new URL('../docs/operations.md', import.meta.url), 'utf8');
    const table = text.slice(
      text.indexOf('## Configuration'),
      text.indexOf('\n## ', text.indexOf('## Configuration') + 1),
    );
    const listed = [...table.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(listed.sort()).toEqual(Object.values(ENV_NAMES).sort());
  });
});

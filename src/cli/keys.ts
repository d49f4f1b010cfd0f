// npm run keys -- create --org <org> [--label <text>] | list [--org <org>] | revoke <keyId>
// In the Docker image: node dist/cli/keys.js create --org <org> ...
// Against DATABASE_URL, or the embedded PostgreSQL of `npm start`; migrates first.
import { parseArgs } from 'node:util';
import { generateApiKey } from '../auth.js';
import { loadConfigOrExit } from '../config.js';
import { insertApiKey, listApiKeys, revokeApiKey } from '../db/api-keys.js';
import { createSql } from '../db/client.js';
import { openConfiguredDatabase } from '../db/embedded-postgres.js';
import { migrate } from '../db/migrations.js';
import { ID_RULE, ID_SYNTAX } from '../schemas/ids.js';

const USAGE =
  'usage: npm run keys -- create --org <org> [--label <text>] | list [--org <org>] | revoke <keyId>\n' +
  '(in the Docker image: node dist/cli/keys.js create ...)';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { org: { type: 'string' }, label: { type: 'string' } },
});
const [command, ...rest] = positionals;
function fail(message: string): never {
  console.error(message);
  process.exit(2);
}
if (command === 'create' && (values.org === undefined || !ID_SYNTAX.test(values.org) || rest.length > 0)) {
  fail(`create needs --org with ${ID_RULE}\n${USAGE}`);
}
if (command === 'revoke' && rest.length !== 1) fail(USAGE);
if (command === 'list' && rest.length > 0) fail(USAGE);
if (!['create', 'list', 'revoke'].includes(command ?? '')) fail(USAGE);
if (values.label !== undefined && values.label.length > 200) fail('--label is at most 200 characters');

const config = loadConfigOrExit();
const database = await openConfiguredDatabase(config, (message) => console.error(message));
const sql = createSql({ databaseUrl: database.url, poolMax: 1 });
let exitCode = 0;
try {
  await migrate(database.migrationUrl, () => {});
  if (command === 'create') {
    const { keyId, key, secretHash } = generateApiKey();
    const record = await insertApiKey(sql, { keyId, orgId: values.org!, secretHash, label: values.label });
    console.error(`Created key ${record.keyId} for the organization ${record.orgId}. It is shown only this once:`);
    console.log(key);
  } else if (command === 'list') {
    const keys = await listApiKeys(sql, values.org);
    if (keys.length === 0) console.error('No keys.');
    for (const k of keys) {
      console.log(
        [k.keyId, k.orgId, k.revokedAt ? `revoked ${k.revokedAt}` : 'active', `created ${k.createdAt}`, k.label ?? '']
          .join('\t')
          .trimEnd(),
      );
    }
  } else {
    if (await revokeApiKey(sql, rest[0]!)) console.log(`Revoked ${rest[0]}.`);
    else {
      console.error(`There is no active key ${rest[0]}.`);
      exitCode = 1;
    }
  }
} finally {
  await sql.end();
  await database.stop();
}
process.exit(exitCode);

// npm run migrate (in the Docker image: node dist/cli/migrate.js): applies pending migrations, then the
// database function files unless they are the ones applied last (so also those of a rollback to this
// release), to DATABASE_URL, or to the embedded PostgreSQL of `npm start`. The server also migrates
// when it starts, but never takes back the functions of a later release.
import { loadConfigOrExit } from '../config.js';
import { openConfiguredDatabase } from '../db/embedded-postgres.js';
import { migrate } from '../db/migrations.js';

const config = loadConfigOrExit();
const database = await openConfiguredDatabase(config, console.log);
try {
  await migrate(database.migrationUrl, console.log, { restoreFunctions: true });
} finally {
  await database.stop();
}

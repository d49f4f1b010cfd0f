// npm run migrate: applies pending migrations to DATABASE_URL, or to the embedded PostgreSQL of `npm start`.
import { loadConfig } from '../src/config.js';
import { openConfiguredDatabase } from '../src/db/embedded-postgres.js';
import { migrate } from '../src/db/migrations.js';

const config = loadConfig();
const database = await openConfiguredDatabase(config, console.log);
try {
  await migrate(database.url, console.log);
} finally {
  await database.stop();
}

// npm run openapi [-- FILE]: writes the OpenAPI document of the service to FILE, or to stdout.
// The app is built exactly as the server builds it, from the same environment (AUTH=required adds the
// API keys, RATE_LIMIT_MAX=0 drops the 429 and the rate-limit headers), but never connects: postgres.js
// opens its connections on the first query, and this script sends none.
import { writeFile } from 'node:fs/promises';
import pino from 'pino';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';

const target = process.argv[2];
const app = await buildApp({
  ...loadConfig(),
  databaseUrl: 'postgres://localhost:1/none',
  logger: pino({ level: 'silent' }),
});
try {
  await app.ready();
  const document = `${JSON.stringify(app.swagger(), null, 2)}\n`;
  if (target) {
    await writeFile(target, document);
    console.error(`OpenAPI document written to ${target}`);
  } else {
    process.stdout.write(document);
  }
} finally {
  await app.close();
}

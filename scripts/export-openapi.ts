// npm run openapi [-- FILE]: writes the OpenAPI document of the service to FILE, or to stdout.
// The app is built exactly as the server builds it, but never connects: postgres.js opens its
// connections on the first query, and this script sends none.
import { writeFile } from 'node:fs/promises';
import pino from 'pino';
import { buildApp } from '../src/app.js';
import { configWith } from '../src/config.js';

const target = process.argv[2];
const app = await buildApp({
  ...configWith({ dbPoolMax: 1 }),
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

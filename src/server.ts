import { buildApp } from './app.js';
import { loadConfigOrExit } from './config.js';
import { openConfiguredDatabase } from './db/embedded-postgres.js';
import { migrate } from './db/migrations.js';
import { createLogger } from './logger.js';
import { WebhookSecretError } from './webhook-secrets.js';
import { checkWebhookSecrets, webhookSecretKeyOf } from './webhook-startup.js';

const SHUTDOWN_TIMEOUT_MS = 30_000;

const config = loadConfigOrExit();

const logger = createLogger(config.logLevel);
const database = await openConfiguredDatabase(config, (message) => logger.info(message));
try {
  const migrated = await migrate(database.migrationUrl, (message) => logger.debug(message));
  if (migrated.functions === 'left-to-a-later-release')
    logger.warn(
      'the database runs the functions of a later release (a rolling upgrade?): left in place; ' +
        '`npm run migrate` of this release applies its own (a rollback)',
    );
} catch (error) {
  logger.fatal({ err: error }, 'migrations failed');
  await database.stop();
  process.exit(1);
}

const app = await buildApp({ ...config, databaseUrl: database.url, logger });
if (config.auth === 'off')
  logger.warn('AUTH=off: no API keys; anyone who reaches the port can use every organization (trusted networks only)');
try {
  await checkWebhookSecrets(app.sql, webhookSecretKeyOf(config.webhookSecretKey), logger);
} catch (error) {
  if (error instanceof WebhookSecretError) logger.fatal(error.message);
  else logger.fatal({ err: error }, 'the webhook secrets could not be checked');
  await app.close();
  await database.stop();
  process.exit(1);
}

let shuttingDown = false;
async function shutdown(signal: string) {
  if (shuttingDown) return;
  shuttingDown = true;
  if (config.shutdownDelayMs > 0) {
    logger.info(`${signal}: /ready answers 503; stopping in ${config.shutdownDelayMs} ms`);
    await app.drain(config.shutdownDelayMs);
  }
  logger.info(`${signal}: finishing requests in flight, then stopping`);
  const force = setTimeout(() => {
    logger.error('shutdown took too long; exiting');
    process.exit(1);
  }, SHUTDOWN_TIMEOUT_MS);
  force.unref();
  try {
    // Fastify closes idle keep-alive connections once, when the close begins; one whose request
    // finishes during the close turns idle later and would hold the server open until it times out.
    const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
    await app.close(); // stops accepting, waits for requests in flight, ends the pool
    clearInterval(sweep);
    await database.stop();
    process.exit(0);
  } catch (error) {
    logger.error({ err: error }, 'shutdown failed');
    process.exit(1);
  }
}
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));

try {
  await app.listen({ port: config.port, host: config.host });
} catch (error) {
  logger.fatal({ err: error }, 'could not listen');
  await app.close();
  await database.stop();
  process.exit(1);
}
const { port } = app.server.address() as { port: number };
const base = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
logger.info(`API: ${base}/api/appointments  docs: ${base}/api/docs`);

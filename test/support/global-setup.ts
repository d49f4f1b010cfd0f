import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { migrate } from '../../src/db/migrations.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A connection to a maintenance database, for CREATE DATABASE. */
    adminUrl: string;
    /** A migrated database that each test file copies. */
    templateDatabase: string;
  }
}

/**
 * Brings PostgreSQL for the whole run: DATABASE_URL when set, otherwise a throwaway embedded cluster.
 * Migrates one template database; each test file creates its own copy of it (createTestDatabase,
 * test/support/database.ts).
 */
export default async function setup(project: TestProject) {
  const templateDatabase = `appointments_test_template_${process.pid}`;
  let adminUrl: string;
  let stopEmbedded = async () => {};
  if (process.env.DATABASE_URL) {
    adminUrl = process.env.DATABASE_URL;
  } else {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'appointments-test-pg-'));
    const embedded = await startEmbeddedPostgres({
      dir,
      database: 'postgres',
      persistent: false,
      unsafeFast: true,
      log: () => {},
    });
    adminUrl = embedded.adminUrl;
    stopEmbedded = embedded.stop;
  }
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin`DROP DATABASE IF EXISTS ${admin(templateDatabase)}`;
  await admin`CREATE DATABASE ${admin(templateDatabase)}`;
  const templateUrl = new URL(adminUrl);
  templateUrl.pathname = `/${templateDatabase}`;
  await migrate(templateUrl.toString(), () => {});

  project.provide('adminUrl', adminUrl);
  project.provide('templateDatabase', templateDatabase);

  return async () => {
    const copies = await admin<{ datname: string }[]>`
      SELECT datname FROM pg_database WHERE datname LIKE ${`${templateDatabase.replace('template', 'copy')}%`}`;
    for (const { datname } of [...copies, { datname: templateDatabase }]) {
      await admin`DROP DATABASE IF EXISTS ${admin(datname)} WITH (FORCE)`;
    }
    await admin.end();
    await stopEmbedded();
  };
}

/*
 * Starts the server once for the whole suite, builds a migrated template database, and
 * hands both to the test files (inject('pg')). Each file clones its own database from the
 * template (test/helpers/db.ts), so files run in parallel without seeing each other.
 */
import type { TestProject } from 'vitest/node';
import { connect, withDatabase } from '../../scripts/lib/db.ts';
import { migrateForTests } from '../helpers/migrate.ts';
import { provisionServer } from './server.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pg: { adminUrl: string; template: string; kind: string };
  }
}

export default async function setup(project: TestProject) {
  const started = Date.now();
  const server = await provisionServer();
  const template = `spectrum_template_${process.pid}`;
  const admin = connect(server.adminUrl, { max: 1 });
  await admin.unsafe(`drop database if exists ${template}`);
  await admin.unsafe(`create database ${template}`);
  // pg_cron lives in the server's postgres database (cron.database_name): test databases
  // are "pg_cron in another database of the cluster".
  if (server.kind !== 'existing') await admin`create extension if not exists pg_cron`;
  const templateUrl = withDatabase(server.adminUrl, template);
  await migrateForTests(templateUrl);
  await admin.end();
  console.log(
    `test server: ${server.kind} (${server.adminUrl}), ` +
      `template migrated in ${Date.now() - started} ms`,
  );
  project.provide('pg', { adminUrl: server.adminUrl, template, kind: server.kind });
  return async () => {
    if (server.kind === 'existing') {
      const a = connect(server.adminUrl, { max: 1 });
      await a.unsafe(`drop database if exists ${template} with (force)`);
      await a.end();
    }
    await server.stop();
  };
}

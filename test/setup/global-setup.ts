/*
 * Starts the server once for the whole suite, builds a migrated template database, and
 * hands both to the test files (inject('pg')). Each file clones its own database from the
 * template (test/helpers/db.ts), so files run in parallel without seeing each other.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { projectRoot } from '../../scripts/lib/paths.ts';
import { connect, withDatabase } from '../../scripts/lib/db.ts';
import { migrateDatabase } from '../../scripts/lib/migrate.ts';
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
  const templateUrl = withDatabase(server.adminUrl, template);
  await migrateDatabase(templateUrl, { schedule: false, log: () => {} });
  // Work in progress: what `npm run build` has planned but nobody committed yet. In CI
  // `npm run build -- --check` has already failed if this is not empty.
  const current = readFileSync(join(projectRoot, 'migrations', 'current.sql'), 'utf8');
  if (current.trim()) {
    const t = connect(templateUrl, { max: 1 });
    await t.begin((tx) => tx.unsafe(current));
    await t.end();
  }
  await admin.end();
  console.log(`test server: ${server.kind} (${server.adminUrl}), template migrated in ${Date.now() - started} ms`);
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

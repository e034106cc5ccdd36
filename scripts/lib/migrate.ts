/*
 * Applies the committed migrations (graphile-migrate) to a database, then the pg_cron
 * schedule. Shared by `npm run migrate`, `npm start`, the tests and the benchmark.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { migrate } from 'graphile-migrate';
// graphile-migrate keeps its pools alive briefly after use, and exits the process when one of
// their idle connections errors (a dropped database): release them as soon as we are done.
import { clearAllPools } from 'graphile-migrate/dist/pgReal.js';
import { connect } from './db.ts';
import { projectRoot } from './paths.ts';
import { applySchedule } from './schedule.ts';

export interface MigrateOptions {
  schedule?: boolean;
  log?: (line: string) => void;
  migrationsFolder?: string;
}

/** Creates pg_cron where the cluster expects it (this database) when we may. */
async function ensureCronExtension(url: string, log: (l: string) => void) {
  const sql = connect(url, { max: 1 });
  try {
    const [r] = await sql`
      select current_setting('cron.database_name', true) = current_database() as home,
             exists (select from pg_catalog.pg_extension where extname = 'pg_cron') as have,
             (select rolsuper from pg_catalog.pg_roles where rolname = current_user) as superuser`;
    if (r!.home && !r!.have) {
      if (r!.superuser) await sql`create extension if not exists pg_cron`;
      else
        log(
          'pg_cron is preloaded for this database but not created: a superuser must run CREATE ' +
            'EXTENSION pg_cron',
        );
    }
  } finally {
    await sql.end();
  }
}

export async function migrateDatabase(url: string, opts: MigrateOptions = {}): Promise<void> {
  const log = opts.log ?? console.log;
  await ensureCronExtension(url, log);
  try {
    await migrate({
      connectionString: url,
      migrationsFolder: opts.migrationsFolder ?? join(projectRoot, 'migrations'),
      pgSettings: { search_path: 'public', client_min_messages: 'warning' },
    });
  } finally {
    clearAllPools();
  }
  if (opts.schedule !== false) await applySchedule(url, undefined, log);
}

/**
 * Migrates as a development tree stands: the committed migrations, then migrations/current.sql
 * (what `npm run build` planned and nobody committed yet) in one transaction. For the tests and
 * the benchmark; in CI `npm run build -- --check` has already failed if current.sql is not empty.
 */
export async function migrateWorkingTree(
  url: string,
  opts: { schedule?: boolean } = {},
): Promise<void> {
  await migrateDatabase(url, { schedule: opts.schedule ?? false, log: () => {} });
  const current = readFileSync(join(projectRoot, 'migrations', 'current.sql'), 'utf8');
  if (!current.trim()) return;
  const sql = connect(url, { max: 1 });
  try {
    await sql.begin((tx) => tx.unsafe(current));
  } finally {
    await sql.end();
  }
}

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
import { distribute } from './citus.ts';
import { connect } from './db.ts';
import { projectRoot } from './paths.ts';
import { applySchedule } from './schedule.ts';

export interface MigrateOptions {
  schedule?: boolean;
  /** Distribute on a Citus coordinator (default: when the citus extension is in the database). */
  distribute?: boolean;
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
  if (opts.distribute !== false) await distributeOnCitus(url, log);
  if (opts.schedule !== false) await applySchedule(url, undefined, log);
}

/**
 * On a Citus coordinator (the citus extension in this database), distributes the tables once
 * (scripts/lib/citus.ts, docs/citus.md); elsewhere does nothing.
 */
export async function distributeOnCitus(url: string, log: (l: string) => void): Promise<void> {
  const sql = connect(url, { max: 1 });
  let citus = false;
  try {
    const [r] = await sql<{ citus: boolean }[]>`
      select exists (select from pg_catalog.pg_extension where extname = 'citus') as citus`;
    citus = r!.citus;
  } finally {
    await sql.end();
  }
  if (citus) await distribute(url, log);
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
  await migrateDatabase(url, { schedule: false, distribute: false, log: () => {} });
  const current = readFileSync(join(projectRoot, 'migrations', 'current.sql'), 'utf8');
  if (current.trim()) {
    const sql = connect(url, { max: 1 });
    try {
      await sql.begin((tx) => tx.unsafe(current));
    } finally {
      await sql.end();
    }
  }
  await distributeOnCitus(url, () => {});
  if (opts.schedule) await applySchedule(url, undefined, () => {});
}

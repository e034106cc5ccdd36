/*
 * DATABASE_URL=… npm run migrate
 * Applies the committed migrations to an existing database (idempotent), then schedules the
 * pg_cron jobs of sql/schedule.json when pg_cron is installed in that database's cluster.
 */
import { migrateDatabase } from './lib/migrate.ts';

const url = process.env.DATABASE_URL;
if (process.argv.length > 2) {
  console.error(
    `npm run migrate takes no arguments (got ${process.argv.slice(2).join(' ')}): set ` +
      `DATABASE_URL instead, e.g. DATABASE_URL=postgres://user@host:5432/db npm run migrate`,
  );
  process.exit(2);
}
if (!url) {
  console.error(
    'DATABASE_URL is not set: run it as DATABASE_URL=postgres://user@host:5432/db npm run migrate',
  );
  process.exit(2);
}
try {
  await migrateDatabase(url);
  console.log('migrations applied');
} catch (e) {
  console.error(`npm run migrate failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}

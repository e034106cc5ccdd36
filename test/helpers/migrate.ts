/* Migrates a database as the suite's template is: committed migrations plus the uncommitted plan. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../../scripts/lib/db.ts';
import { migrateDatabase } from '../../scripts/lib/migrate.ts';
import { projectRoot } from '../../scripts/lib/paths.ts';

export async function migrateForTests(url: string, opts: { schedule?: boolean } = {}): Promise<void> {
  await migrateDatabase(url, { schedule: opts.schedule ?? false, log: () => {} });
  // Work in progress: what `npm run build` has planned but nobody committed yet. In CI
  // `npm run build -- --check` has already failed if this is not empty.
  const current = readFileSync(join(projectRoot, 'migrations', 'current.sql'), 'utf8');
  if (current.trim()) {
    const sql = connect(url, { max: 1 });
    try {
      await sql.begin((tx) => tx.unsafe(current));
    } finally {
      await sql.end();
    }
  }
}

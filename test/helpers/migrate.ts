/* Migrates a database as the suite's template is: committed migrations, then the uncommitted
 * plan. */
import { migrateWorkingTree } from '../../scripts/lib/migrate.ts';

export const migrateForTests = (url: string, opts: { schedule?: boolean } = {}) =>
  migrateWorkingTree(url, opts);

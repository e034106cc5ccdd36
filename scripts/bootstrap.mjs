// Runs before `npm start` and `npm test` (prestart/pretest): on a fresh clone the project's
// packages are not installed yet, so install them from the lockfile first. Plain Node on
// purpose: tsx itself is one of those packages.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (
  !existsSync(join(root, 'node_modules', '.bin', 'tsx')) ||
  !existsSync(join(root, 'node_modules', 'vitest'))
) {
  console.log('installing the project packages (npm ci)…');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('npm ci failed: run `npm ci` by hand and read its output');
    process.exit(r.status ?? 1);
  }
}

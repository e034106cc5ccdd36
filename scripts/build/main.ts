/*
 * npm run build [-- --check] [-- --accept-spec-changes]
 * Regenerates the generated files of sql/ from the spec, and migrations/current.sql from
 * sql/ and what the committed migrations already deployed. This is the only code that
 * writes files. --check writes nothing and fails, naming the files, when anything is stale.
 * A spec change that would lose data or is ambiguous (a deployed field removed, renamed,
 * retyped, moved) is refused, writing nothing, with the SQL to write by hand at the top of
 * current.sql; --accept-spec-changes then plans the change around that SQL.
 */
import { existsSync, readFileSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { emitAll } from '../emit/index.ts';
import {
  checkEvolution,
  editedSections,
  explainEvolution,
  parseCurrent,
  planCurrent,
  readDeployed,
  specShape,
} from './plan.ts';
import { buildModel, type Model } from '../spec/model.ts';
import { eventSpec } from '../spec/event-spec.ts';
import type { EventSpec } from '../spec/types.ts';
import { projectRoot } from '../lib/paths.ts';

const KNOWN = new Set(['--check', '--accept-spec-changes']);
const USAGE =
  '`npm run build`, `npm run build -- --check` or `npm run build -- --accept-spec-changes`';

/** Exit status: 0 done, 1 refused or out of date (nothing written), 2 bad arguments. */
export function main(argv: string[], root = projectRoot, spec: EventSpec = eventSpec): number {
  const bad = argv.filter((a) => !KNOWN.has(a));
  if (bad.length) {
    console.error(`npm run build: unknown argument ${bad.join(' ')}: use ${USAGE}`);
    return 2;
  }
  const check = argv.includes('--check');
  const accept = argv.includes('--accept-spec-changes');
  if (check && accept) {
    console.error(
      `npm run build: --check writes nothing, so it cannot accept spec changes: use ${USAGE}`,
    );
    return 2;
  }
  let model: Model;
  try {
    model = buildModel(spec);
  } catch (e) {
    if (!(e instanceof Error && e.name === 'SpecError')) throw e;
    console.error(
      `npm run build: ${e.message}\nFix scripts/spec/event-spec.ts; nothing was written.`,
    );
    return 1;
  }
  const generated = emitAll(model);
  const sqlDir = join(root, 'sql');
  const migrationsDir = join(root, 'migrations');
  const currentPath = join(migrationsDir, 'current.sql');
  const rel = (p: string) => p.slice(root.length + 1);

  const deployed = readDeployed(migrationsDir);
  const shape = specShape(model);
  const onDisk = existsSync(currentPath) ? readFileSync(currentPath, 'utf8') : '';
  const disk = parseCurrent(onDisk);

  const files = new Map<string, string>();
  for (const f of readdirSync(sqlDir).filter((f) => f.endsWith('.sql'))) {
    if (!generated.has(f)) files.set(f, readFileSync(join(sqlDir, f), 'utf8'));
  }
  for (const [f, text] of generated) files.set(f, text);

  const problems = checkEvolution(deployed.spec, shape);
  // Accepted earlier: current.sql already plans exactly this shape around hand-written SQL.
  const acceptedBefore =
    disk.handWritten !== '' && JSON.stringify(disk.spec) === JSON.stringify(shape);
  const edited = editedSections(disk, files);
  const refusals: string[] = [];
  if (problems.length && !check) {
    const fixable = problems.every((p) => p.acceptable);
    if (!fixable || !(accept || acceptedBefore)) refusals.push(explainEvolution(problems));
    else if (disk.handWritten === '')
      refusals.push(
        `--accept-spec-changes: migrations/current.sql has no hand-written SQL yet. ${explainEvolution(problems)}`,
      );
  }
  if (edited.length)
    refusals.push(
      `migrations/current.sql: the section of ${edited.map((f) => `sql/${f}`).join(', ')} was edited by hand and build would overwrite it: ` +
        'edit the sql/ file instead, or move your SQL above the first "-- spectrum:object" line, where build keeps it.',
    );
  if (refusals.length && !check) {
    console.error(`npm run build: ${refusals.join('\n')}\nNothing was written.`);
    return 1;
  }

  const current = planCurrent(files, deployed, shape, disk.handWritten);
  const wanted = new Map<string, string>([...generated].map(([f, t]) => [join(sqlDir, f), t]));
  const stale = [...wanted]
    .filter(([p, t]) => !existsSync(p) || readFileSync(p, 'utf8') !== t)
    .map(([p]) => p);
  // graphile-migrate leaves blankMigrationContent (or its placeholder comment) after a commit.
  const onDiskPlan = /^\s*(-- Enter migration here)?\s*$/.test(onDisk) ? '' : onDisk;
  if (check) {
    const out = stale.map((p) => `${rel(p)} is out of date with the spec`);
    if (current !== onDiskPlan) out.push('migrations/current.sql is out of date with sql/');
    if (current !== '')
      out.push(
        'migrations/current.sql holds changes that no committed migration has: run `graphile-migrate commit`',
      );
    if (problems.length)
      out.push(...problems.map((p) => `scripts/spec/event-spec.ts: ${p.message.split('\n')[0]}`));
    out.push(...refusals);
    if (out.length) {
      console.error(
        `npm run build -- --check failed:\n  ${out.join('\n  ')}\nRun \`npm run build\` and commit the result.`,
      );
      return 1;
    }
    console.log('generated SQL and migrations are up to date with the spec');
    return 0;
  }
  for (const [p, t] of wanted) if (stale.includes(p)) writeFileSync(p, t);
  if (current !== onDiskPlan) writeFileSync(currentPath, current);
  const changed = [
    ...stale.map(rel),
    ...(current !== onDiskPlan ? ['migrations/current.sql'] : []),
  ];
  if (problems.length)
    console.log(
      `spec changes accepted (${problems.map((p) => p.field).join(', ')}): the hand-written SQL at the top of migrations/current.sql runs first`,
    );
  console.log(
    changed.length
      ? `wrote ${changed.join(', ')}`
      : 'nothing to write: sql/ and migrations/current.sql are up to date',
  );
  if (current)
    console.log(
      'migrations/current.sql has uncommitted changes: review it, then `graphile-migrate commit`.',
    );
  return 0;
}

// Run as a command (not when a test imports main): compare real paths as file URLs, so a
// project path with spaces or non-ASCII characters still runs.
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href)
  process.exitCode = main(process.argv.slice(2));

/*
 * npm run build [-- --check] [-- --accept-spec-changes]
 * Regenerates the generated files of sql/ from the spec, and migrations/current.sql from
 * sql/ and what the committed migrations already deployed. This is the only code that
 * writes files. --check writes nothing and fails, naming the files, when anything is stale.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { emitAll } from './emit/index.ts';
import { checkEvolution, planCurrent, readDeployed, specShape } from './lib/migrations.ts';
import { buildModel } from './spec/model.ts';
import { eventSpec } from './spec/event-spec.ts';
import { projectRoot } from './lib/paths.ts';

const KNOWN = new Set(['--check', '--accept-spec-changes']);

export function main(argv: string[], root = projectRoot): number {
  const bad = argv.filter((a) => !KNOWN.has(a));
  if (bad.length) {
    console.error(`npm run build: unknown argument ${bad.join(' ')}: use \`npm run build\`, \`npm run build -- --check\` or \`npm run build -- --accept-spec-changes\``);
    return 2;
  }
  const check = argv.includes('--check');
  const model = buildModel(eventSpec);
  const generated = emitAll(model);
  const sqlDir = join(root, 'sql');
  const migrationsDir = join(root, 'migrations');

  const deployed = readDeployed(migrationsDir);
  const shape = specShape(model);
  if (!argv.includes('--accept-spec-changes')) checkEvolution(deployed.spec, shape);

  const files = new Map<string, string>();
  for (const f of readdirSync(sqlDir).filter((f) => f.endsWith('.sql'))) {
    if (!generated.has(f)) files.set(f, readFileSync(join(sqlDir, f), 'utf8'));
  }
  for (const [f, text] of generated) files.set(f, text);
  const current = planCurrent(files, deployed, shape);

  const wanted = new Map<string, string>([...generated].map(([f, t]) => [join(sqlDir, f), t]));
  const currentPath = join(migrationsDir, 'current.sql');
  const stale = [...wanted].filter(([p, t]) => !existsSync(p) || readFileSync(p, 'utf8') !== t).map(([p]) => p);
  // graphile-migrate leaves a placeholder comment in current.sql after a commit.
  const onDisk = existsSync(currentPath) ? readFileSync(currentPath, 'utf8') : '';
  const onDiskPlan = /^\s*(-- Enter migration here)?\s*$/.test(onDisk) ? '' : onDisk;
  if (check) {
    const problems = stale.map((p) => `${p.slice(root.length + 1)} is out of date with the spec`);
    if (current !== onDiskPlan) problems.push('migrations/current.sql is out of date with sql/');
    if (current !== '') problems.push('migrations/current.sql holds changes that no committed migration has: run `graphile-migrate commit`');
    if (problems.length) {
      console.error(`npm run build -- --check failed:\n  ${problems.join('\n  ')}\nRun \`npm run build\` and commit the result.`);
      return 1;
    }
    console.log('generated SQL and migrations are up to date with the spec');
    return 0;
  }
  for (const [p, t] of wanted) if (stale.includes(p)) writeFileSync(p, t);
  if (current !== onDiskPlan) writeFileSync(currentPath, current);
  const changed = [...stale.map((p) => p.slice(root.length + 1)), ...(current !== onDiskPlan ? ['migrations/current.sql'] : [])];
  console.log(changed.length ? `wrote ${changed.join(', ')}` : 'nothing to do: everything is up to date');
  if (current) console.log('migrations/current.sql has uncommitted changes: review it, then `graphile-migrate commit`.');
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    if (e instanceof Error && (e.name === 'SpecError' || e.name === 'EvolutionError')) {
      console.error(`npm run build: ${e.message}`);
      process.exitCode = 1;
    } else throw e;
  }
}

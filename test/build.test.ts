/*
 * `npm run build` and `npm run build -- --check`, run as a DBA runs them, in a throwaway copy
 * of the project (and on the repository itself once its plan is committed).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../scripts/lib/paths.ts';
import { copyProject, type ProjectCopy } from './helpers/project-copy.ts';

const planPending =
  readFileSync(join(projectRoot, 'migrations', 'current.sql'), 'utf8').trim() !== '';

describe('npm run build -- --check on the repository', () => {
  it.skipIf(planPending)(
    'passes: the generated SQL and the migrations are up to date with the spec',
    () => {
      const r = spawnSync(
        join(projectRoot, 'node_modules', '.bin', 'tsx'),
        ['scripts/build/main.ts', '--check'],
        { cwd: projectRoot, encoding: 'utf8' },
      );
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    },
  );
});

describe('npm run build in a copy of the project', () => {
  let copy: ProjectCopy;
  beforeAll(async () => {
    copy = copyProject(inject('pg').adminUrl);
    expect(copy.build().status).toBe(0);
    // Whatever sql/ holds beyond the committed migrations becomes one more committed migration.
    if (copy.read('migrations/current.sql').trim())
      expect((await copy.commit('work in progress')).status).toBe(0);
  });
  afterAll(async () => copy?.remove());

  it('--check passes once everything is built and committed', () => {
    const r = copy.build('--check');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('up to date');
    expect(copy.read('migrations/current.sql').trim()).toBe('');
  });

  it('--check fails naming a generated file edited by hand, and writes nothing', () => {
    const before = copy.snapshot();
    copy.write(
      'sql/103_fact_events.sql',
      `${before.get('sql/103_fact_events.sql')}-- a hand edit\n`,
    );
    const edited = copy.snapshot();
    const r = copy.build('--check');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('sql/103_fact_events.sql is out of date with the spec');
    expect(copy.snapshot()).toEqual(edited);

    const fix = copy.build();
    expect(fix.status).toBe(0);
    expect(fix.stdout).toContain('wrote sql/103_fact_events.sql');
    expect(copy.snapshot()).toEqual(before);
    expect(copy.build('--check').status).toBe(0);
  });

  it('--check names the generated files a spec edit makes stale', () => {
    const spec = copy.read('scripts/spec/event-spec.ts');
    copy.write(
      'scripts/spec/event-spec.ts',
      spec.replace('maxTextLength: 200', 'maxTextLength: 300'),
    );
    try {
      const r = copy.build('--check');
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('sql/131_extract_event.sql is out of date with the spec');
      expect(r.stderr).toContain('sql/140_process_claimed.sql is out of date with the spec');
      expect(r.stderr).not.toContain('sql/100_dim_accounts.sql');
    } finally {
      copy.write('scripts/spec/event-spec.ts', spec);
    }
  });

  it('plans an edited sql/ file into current.sql once, until it is committed', async () => {
    const file = 'sql/220_pipeline_status.sql';
    const text = copy.read(file);
    copy.write(file, `${text.trimEnd()}\n-- reviewed\n`);
    const stale = copy.build('--check');
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain('migrations/current.sql is out of date with sql/');

    expect(copy.build().stdout).toContain('wrote migrations/current.sql');
    const plan = copy.read('migrations/current.sql');
    expect(plan.match(/^-- spectrum:object \S+/gm)).toEqual([
      '-- spectrum:object 220_pipeline_status.sql',
    ]);
    expect(copy.build().stdout).toContain('nothing to write');
    const uncommitted = copy.build('--check');
    expect(uncommitted.status).toBe(1);
    expect(uncommitted.stderr).toContain('graphile-migrate commit');

    const commit = await copy.commit('pipeline_status reviewed');
    expect(commit.status, commit.stderr).toBe(0);
    expect(copy.build('--check').status).toBe(0);
  });

  it('keeps SQL written by hand above the objects of current.sql, and runs it first', () => {
    const file = 'sql/220_pipeline_status.sql';
    copy.write(file, `${copy.read(file).trimEnd()}\n-- reviewed again\n`);
    const hand = `-- a one-off by hand\ncreate index if not exists raw_events_note on spectrum.raw_events (received_at) where status = 'failed';`;
    copy.write('migrations/current.sql', `${hand}\n`);
    expect(copy.build().status).toBe(0);
    const plan = copy.read('migrations/current.sql');
    expect(plan).toContain(hand);
    expect(plan.indexOf(hand)).toBeLessThan(
      plan.indexOf('-- spectrum:object 220_pipeline_status.sql'),
    );
    expect(copy.build().stdout).toContain('nothing to write');
    expect(copy.read('migrations/current.sql')).toBe(plan);
  });

  it('refuses, writing nothing, to overwrite an object section of current.sql edited by hand', () => {
    const plan = copy.read('migrations/current.sql');
    copy.write(
      'migrations/current.sql',
      `${plan.trimEnd()}\nalter table spectrum.raw_events set (fillfactor = 90);\n`,
    );
    const before = copy.snapshot();
    const r = copy.build();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('section of sql/220_pipeline_status.sql was edited by hand');
    expect(copy.snapshot()).toEqual(before);
    copy.write('migrations/current.sql', plan);
  });

  it('refuses an invalid spec naming the entry, writing nothing', () => {
    const spec = copy.read('scripts/spec/event-spec.ts');
    copy.write(
      'scripts/spec/event-spec.ts',
      spec.replace(
        "name: 'city', path: ['geo', 'city'], type: 'text'",
        "name: 'city', path: ['geo', 'city'], type: 'txt'",
      ),
    );
    try {
      const before = copy.snapshot();
      const r = copy.build();
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('fields[7] (city): unknown type "txt"');
      expect(copy.snapshot()).toEqual(before);
    } finally {
      copy.write('scripts/spec/event-spec.ts', spec);
    }
  });

  it('a bad argument prints the usage and exits 2', () => {
    for (const args of [['--chek'], ['--check', '--accept-spec-changes'], ['check']]) {
      const r = copy.build(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('npm run build -- --check');
    }
  });
});

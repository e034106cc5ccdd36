/*
 * A database deployed by earlier migrations keeps its data through the later ones: each
 * committed migration is applied in turn to a database holding processed events, and the
 * renames of 000003 (event_index to event_registry, status_totals_track to
 * status_totals_trigger, maintenance's p_batch to p_batch_size) keep every row.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, withDatabase, type Sql } from '../scripts/lib/db.ts';
import { migrateDatabase } from '../scripts/lib/migrate.ts';
import { projectRoot } from '../scripts/lib/paths.ts';
import { testDatabase, insertEvents, runPipeline, type TestDb } from './helpers/db.ts';
import { ACCOUNT } from './helpers/fixtures.ts';

const EVENT = '01930000-0000-7000-8000-00000000aaaa';
const committed = join(projectRoot, 'migrations', 'committed');

/** A migrations folder holding the committed migrations up to `last` (a file name prefix). */
function migrationsUpTo(last: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'spectrum-upgrade-'));
  mkdirSync(join(dir, 'committed'));
  for (const f of readdirSync(committed).filter((f) => f <= `${last}~`))
    cpSync(join(committed, f), join(dir, 'committed', f));
  writeFileSync(join(dir, 'current.sql'), '');
  return dir;
}

let owner: TestDb;
let name: string;
let db: Sql;
const folders: string[] = [];

beforeAll(async () => {
  owner = await testDatabase('upgrade');
  name = `upgrade_${owner.name}`.slice(0, 60);
  const admin = connect(owner.adminUrl, { max: 1 });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  db = connect(withDatabase(owner.adminUrl, name), { max: 2 });
});
afterAll(async () => {
  await db?.end();
  for (const f of folders) rmSync(f, { recursive: true, force: true });
  const admin = connect(owner.adminUrl, { max: 1 });
  await admin.unsafe(`drop database if exists ${name} with (force)`);
  await admin.end();
  await owner?.drop();
});

const migrateTo = async (last: string) => {
  const folder = last === 'all' ? join(projectRoot, 'migrations') : migrationsUpTo(last);
  if (last !== 'all') folders.push(folder);
  await migrateDatabase(withDatabase(owner.adminUrl, name), {
    schedule: false,
    migrationsFolder: folder,
    log: () => {},
  });
};

describe('upgrading a database deployed before 000003', () => {
  // The registry before the upgrade, and the registry and counts right after it (later tests
  // process more events).
  let before: { event_id: string; raw_event_id: string }[];
  let after: { event_id: string; raw_event_id: string }[];
  let counts: { status: string; events: number }[];

  beforeAll(async () => {
    await migrateTo('000002');
    await insertEvents(db, [
      { event_id: EVENT, event_type: 'signup', account_id: ACCOUNT, user_id: 'u1' },
      { event_type: 'click', account_id: ACCOUNT },
      { event_type: 'click', account_id: 'abc' },
    ]);
    await runPipeline(db);
    before = await db`select event_id, raw_event_id from spectrum.event_index order by event_id`;
    await migrateTo('all');
    after = await db`select event_id, raw_event_id from spectrum.event_registry order by event_id`;
    counts = await db`
      select status, events::int from spectrum.pipeline_status
       where status in ('done', 'failed') order by status`;
  });

  it('started from processed events in event_index', () => {
    expect(before).toHaveLength(2);
  });

  it('keeps every row of event_index as event_registry, with its key renamed', async () => {
    expect(after).toEqual(before);
    const [r] = await db`
      select to_regclass('spectrum.event_index') as old_table,
             to_regclass('spectrum.event_registry_pkey') as pkey`;
    expect(r!.old_table).toBeNull();
    expect(r!.pkey).toBe('spectrum.event_registry_pkey');
  });

  it('keeps the counter triggers, now on status_totals_trigger, and the counts exact', async () => {
    const functions = await db`
      select distinct p.proname from pg_catalog.pg_trigger t
        join pg_catalog.pg_proc p on p.oid = t.tgfoid
       where t.tgrelid = 'spectrum.raw_events'::regclass and not t.tgisinternal`;
    expect(functions.map((f) => f.proname)).toEqual(['status_totals_trigger']);
    const [old] = await db`select to_regprocedure('spectrum.status_totals_track()') as f`;
    expect(old!.f).toBeNull();
    expect(counts).toEqual([
      { status: 'done', events: 2 },
      { status: 'failed', events: 1 },
    ]);
  });

  it(
    'replaces the fact of an event received again: ' + 'still one fact, the newest version',
    async () => {
      const [newer] = await insertEvents(db, [
        { event_id: EVENT, event_type: 'signup_again', account_id: ACCOUNT, user_id: 'u1' },
      ]);
      await runPipeline(db);
      const facts = await db`
        select raw_event_id, event_type from spectrum.fact_events where event_id = ${EVENT}`;
      expect(facts).toEqual([{ raw_event_id: newer, event_type: 'signup_again' }]);
    },
  );

  it('has maintenance take p_batch_size, and no longer p_batch', async () => {
    await db`call spectrum.maintenance(p_batch_size => 5)`;
    const err = await db`call spectrum.maintenance(p_batch => 5)`.catch((e) => e);
    expect(err.code).toBe('42883');
  });
});

/*
 * A fact partition while a batch holds an uncommitted dimension upsert: attaching a partition
 * clones its foreign keys, which takes SHARE ROW EXCLUSIVE on every dimension, so creating one
 * waits behind the upsert until lock_timeout. Each test starts with the upsert held and none of
 * the partitions it would create: the one of a month four years ago, and those 4 to 11 months
 * ahead.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Sql } from '../scripts/lib/db.ts';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import { ACCOUNT, fresh, valid } from './helpers/fixtures.ts';

let db: TestDb;
beforeAll(async () => {
  db = await testDatabase('partitions');
});
afterAll(async () => db?.drop());

describe('a fact partition while a batch holds an uncommitted dimension upsert', () => {
  let holder: Awaited<ReturnType<Sql['reserve']>>;
  let holding = false;
  let month: Date;
  const partition = () => `fact_events_${month.toISOString().slice(0, 7).replace('-', '_')}`;
  const exists = async () =>
    (await db.sql`select to_regclass(${`spectrum.${partition()}`}) is not null as ok`)[0]!
      .ok as boolean;

  beforeAll(async () => {
    [{ month }] = (await db.sql`
      select date_trunc('month', now() at time zone 'UTC' - interval '4 years') at time zone 'UTC'
             as month`) as unknown as [{ month: Date }];
  });
  beforeEach(async () => {
    await fresh(db.sql);
    const partitions = await db.sql`
      select spectrum.fact_partition_name(m) as name
        from unnest(array[${month}::timestamptz] || array(
               select (date_trunc('month', now() at time zone 'UTC') + make_interval(months => k))
                      at time zone 'UTC'
                 from generate_series(4, 11) k)) m`;
    for (const { name } of partitions)
      await db.sql`drop table if exists ${db.sql(`spectrum.${name}`)}`;
    holder = await db.sql.reserve();
    await holder`begin`;
    await holder`
      insert into spectrum.dim_accounts (account_id, first_seen_at, last_seen_at)
      values (gen_random_uuid(), now(), now())`;
    holding = true;
  });
  afterEach(async () => {
    if (holding) await holder`rollback`;
    holding = false;
    holder?.release();
  });

  /** A late event in the month four years ago, and three of now. */
  const insertBatch = () =>
    insertEvents(db.sql, [
      {
        event_type: 'late',
        account_id: ACCOUNT,
        timestamp: new Date(month.getTime() + 14 * 86400_000).toISOString(),
      },
      ...valid(3),
    ]);

  it(
    'ensure_fact_partitions gives up with 55P03 after its 5 s lock timeout, ' + 'creating nothing',
    async () => {
      expect(await exists()).toBe(false);
      const started = performance.now();
      const err =
        await db.sql`select spectrum.ensure_fact_partitions(array[${month}::timestamptz])`.catch(
          (e) => e,
        );
      const waited = performance.now() - started;
      expect(err.code).toBe('55P03');
      expect(waited).toBeGreaterThan(4500);
      expect(waited).toBeLessThan(10000);
      expect(await exists()).toBe(false);
    },
  );

  it(
    'process_pending stops with contention ' + 'and leaves the batch pending for the next tick',
    async () => {
      const ids = await insertBatch();
      await runPipeline(db.sql);
      const [run] = await db.sql`
        select stopped_because, batches::int
          from spectrum.pipeline_runs order by run_id desc limit 1`;
      expect(run).toEqual({ stopped_because: 'contention', batches: 0 });
      const rows = await db.sql`
        select status, attempts from spectrum.raw_events where id = any (${ids}::uuid[])`;
      expect(rows).toEqual(ids.map(() => ({ status: 'pending', attempts: 0 })));
      expect(await exists()).toBe(false);
    },
  );

  it('maintenance notes the timeout and goes on with retention', async () => {
    await db.sql`
      insert into spectrum.raw_events (id, payload, received_at, status, processed_at, attempts)
      select spectrum.uuid_v7(t), '{"event_type": "old"}', t, 'done', t, 1
        from (select now() - interval '200 days' as t) s`;
    await db.sql`select spectrum.recount_status()`;
    await db.sql`call spectrum.maintenance(p_months_ahead => 11)`;
    const [run] = await db.sql`
      select partitions_created, raw_deleted::int, finished_at, note
        from spectrum.maintenance_runs order by run_id desc limit 1`;
    expect(run!.partitions_created).toBe(0);
    expect(run!.raw_deleted).toBe(1);
    expect(run!.finished_at).not.toBeNull();
    expect(run!.note).toMatch(/fact partitions not created/);
  });

  it(
    'once the upsert commits, the next tick creates the partition, with its comment, ' +
      'and does the batch',
    async () => {
      await insertBatch();
      await runPipeline(db.sql); // under contention: the batch stays pending
      await holder`rollback`;
      holding = false;
      await runPipeline(db.sql);
      const [run] = await db.sql`
        select stopped_because, done::int
          from spectrum.pipeline_runs order by run_id desc limit 1`;
      expect(run).toEqual({ stopped_because: 'no pending rows', done: 4 });
      const [p] = await db.sql`
        select obj_description(${`spectrum.${partition()}`}::regclass, 'pg_class') as comment`;
      expect(p!.comment).toBeTruthy();
      await db.sql`call spectrum.maintenance(p_months_ahead => 11)`;
      const [m] = await db.sql`
        select partitions_created, note
          from spectrum.maintenance_runs order by run_id desc limit 1`;
      expect(m!.partitions_created).toBeGreaterThan(0);
      const [none] = await db.sql`
        select count(*)::int as n from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'spectrum.fact_events'::regclass
           and obj_description(c.oid, 'pg_class') is null`;
      expect(none!.n).toBe(0);
    },
  );
});

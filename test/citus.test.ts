/*
 * The project on Citus: a coordinator and two workers of the test's own, the migrations, then
 * the distribution (scripts/lib/citus.ts). Runs only where Citus is installed; elsewhere one
 * line says so and the tests are reported as skipped, never as passed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  citusCluster,
  citusInstalled,
  distribute,
  type CitusCluster,
} from '../scripts/lib/citus.ts';
import { connect, type Sql } from '../scripts/lib/db.ts';
import { migrateWorkingTree } from '../scripts/lib/migrate.ts';
import { valid } from './helpers/fixtures.ts';

const installed = citusInstalled();
if (!installed)
  console.log(
    'Citus is not installed: the tests of test/citus.test.ts did not run (docs/citus.md says ' +
      'how to run them)',
  );

describe.skipIf(!installed)('on a Citus coordinator with two workers', () => {
  let cluster: CitusCluster;
  let url: string;
  let sql: Sql;

  beforeAll(async () => {
    cluster = await citusCluster({ workers: 2, cronDatabase: 'spectrum' });
    url = await cluster.createDatabase('spectrum');
    // The migrations distribute by themselves where the citus extension is.
    await migrateWorkingTree(url);
    sql = connect(url, { max: 4 });
  }, 240_000);
  afterAll(async () => {
    await sql?.end();
    cluster?.remove();
  });

  it('distributes the account tables together, raw_events by bucket, the rest as reference', async () => {
    const rows = await sql<{ name: string; method: string; column: string | null }[]>`
      select logicalrelid::regclass::text as name, partmethod as method,
             column_to_column_name(logicalrelid, partkey) as column
        from pg_dist_partition
       where logicalrelid::regclass::text not like 'spectrum.fact_events_%'
       order by 1`;
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    for (const t of ['dim_accounts', 'dim_users', 'fact_events', 'event_registry']) {
      expect(byName[`spectrum.${t}`]).toMatchObject({ method: 'h', column: 'account_id' });
    }
    expect(byName['spectrum.raw_events']).toMatchObject({ method: 'h', column: 'bucket' });
    for (const t of ['dim_geography', 'status_totals', 'pipeline_runs', 'maintenance_runs'])
      expect(byName[`spectrum.${t}`]?.method, t).toBe('n');
    const [colocated] = await sql<{ groups: number }[]>`
      select count(distinct colocationid)::int as groups from pg_dist_partition
       where logicalrelid in ('spectrum.dim_accounts'::regclass, 'spectrum.dim_users'::regclass,
                              'spectrum.fact_events'::regclass, 'spectrum.event_registry'::regclass)`;
    expect(colocated!.groups).toBe(1);
    // Every shard of raw_events is placed, on both workers.
    const placed = await sql<{ nodeport: number }[]>`
      select distinct p.nodeport from pg_dist_shard s join pg_dist_shard_placement p using (shardid)
       where s.logicalrelid = 'spectrum.raw_events'::regclass`;
    expect(placed.map((p) => p.nodeport).sort()).toEqual(cluster.workers.map((w) => w.port).sort());
  });

  it('a second distribution changes nothing', async () => {
    expect(await distribute(url, () => {})).toBe('already');
  });

  it('keeps every producer row, INSERT and COPY, spread over one bucket per shard', async () => {
    await sql`truncate spectrum.raw_events`;
    const events = valid(640).map((e, n) => ({ ...e, n }));
    await sql`insert into spectrum.raw_events (payload)
              select p from jsonb_array_elements(${sql.json(events.slice(0, 320))}) p`;
    const copy = await sql`copy spectrum.raw_events (payload) from stdin`.writable();
    for (const e of events.slice(320)) copy.write(`${JSON.stringify(e).replace(/\\/g, '\\\\')}\n`);
    await new Promise<void>((ok, fail) => copy.end((e?: Error | null) => (e ? fail(e) : ok())));
    const [r] = await sql<{ rows: number; events: number; buckets: number; shards: number }[]>`
      select count(*)::int as rows, count(distinct payload ->> 'n')::int as events,
             count(distinct bucket)::int as buckets,
             count(distinct get_shard_id_for_distribution_column('spectrum.raw_events', bucket))::int
               as shards
        from spectrum.raw_events`;
    expect(r).toMatchObject({ rows: 640, events: 640 });
    // 640 rows over 32 buckets: each bucket its own shard, and nearly all of them used.
    expect(r!.buckets).toBe(r!.shards);
    expect(r!.buckets).toBeGreaterThan(24);
  });

  it('answers pipeline_status on the distributed tables', async () => {
    await sql`truncate spectrum.raw_events`;
    await sql`insert into spectrum.raw_events (payload)
              select p from jsonb_array_elements(${sql.json(valid(5))}) p`;
    const rows = await sql<{ status: string; events: string }[]>`
      select status, events from spectrum.pipeline_status`;
    expect(rows.map((r) => [r.status, Number(r.events)])).toEqual([
      ['pending', 5],
      ['processing', 0],
      ['done', 0],
      ['failed', 0],
    ]);
  });

  it('processes every event exactly once, newest version, concurrent callers and all', async () => {
    await sql`truncate spectrum.raw_events`;
    const event = (n: number, account: number, version: number) => ({
      event_id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
      event_type: 'click',
      account_id: `00000000-0000-4000-8000-${String(account).padStart(12, '0')}`,
      user_id: `u${n % 7}`,
      properties: { version },
    });
    const first = Array.from({ length: 600 }, (_, n) => event(n, n % 40, 1));
    const bad = Array.from({ length: 6 }, (_, n) => ({
      event_type: 'click',
      account_id: `bad ${n}`,
    }));
    await sql`insert into spectrum.raw_events (payload)
              select p from jsonb_array_elements(${sql.json([...first, ...bad])}) p`;
    // A newer version of a third of them, then four callers at once.
    const second = first
      .filter((_, n) => n % 3 === 0)
      .map((e) => ({ ...e, properties: { version: 2 } }));
    await sql`insert into spectrum.raw_events (payload)
              select p from jsonb_array_elements(${sql.json(second)}) p`;
    await Promise.all(
      Array.from({ length: 4 }, () => sql`call spectrum.process_pending(p_batch_size => 50)`),
    );
    await sql`call spectrum.process_pending()`;
    const [r] = await sql<
      { facts: number; distinct: number; newest: number; pending: number; failed: number }[]
    >`
      select (select count(*)::int from spectrum.fact_events) as facts,
             (select count(distinct event_id)::int from spectrum.fact_events) as distinct,
             (select count(*)::int from spectrum.fact_events where properties ->> 'version' = '2')
               as newest,
             (select count(*)::int from spectrum.raw_events where status <> 'done'
                 and status <> 'failed') as pending,
             (select count(*)::int from spectrum.raw_events where status = 'failed') as failed`;
    expect(r).toEqual({ facts: 600, distinct: 600, newest: 200, pending: 0, failed: 6 });
    const status = await sql<{ status: string; events: string }[]>`
      select status, events from spectrum.pipeline_status`;
    expect(status.map((s) => [s.status, Number(s.events)])).toEqual([
      ['pending', 0],
      ['processing', 0],
      ['done', 800],
      ['failed', 6],
    ]);
  });

  it('reprocesses (one UPDATE and in chunks): rows claimed again, counts exact, facts once', async () => {
    const counts = async () => {
      const [c] = await sql<{ done: number; failed: number; shown: string; facts: number }[]>`
        select (select count(*)::int from spectrum.raw_events where status = 'done') as done,
               (select count(*)::int from spectrum.raw_events where status = 'failed') as failed,
               (select string_agg(status || '=' || events, ' ' order by status)
                  from spectrum.pipeline_status) as shown,
               (select count(*)::int from spectrum.fact_events) as facts`;
      return c!;
    };
    const before = await counts();
    expect(await sql`select spectrum.reprocess(status => 'failed')::int as n`).toEqual([{ n: 6 }]);
    const [some] = await sql<{ ids: string[] }[]>`
      select array_agg(id) as ids from (select id from spectrum.raw_events
                                         where status = 'done' order by id limit 50) d`;
    await sql`select spectrum.reprocess(ids => ${some!.ids}::uuid[])`;
    await sql`call spectrum.reprocess_in_chunks(status => 'done', chunk_size => 100)`;
    const queued = await counts();
    expect(queued).toMatchObject({ done: 0, failed: 0, facts: before.facts });
    expect(queued.shown).toBe('done=0 failed=0 pending=806 processing=0');
    await sql`call spectrum.process_pending()`;
    const after = await counts();
    expect(after).toEqual(before);
    expect(after.shown).toBe('done=800 failed=6 pending=0 processing=0');
  });

  it('a job on each worker processes the buckets of its own shards, all of them together', async () => {
    const fresh = Array.from({ length: 300 }, (_, n) => ({
      event_type: 'view',
      account_id: `00000000-0000-4000-9000-${String(n % 30).padStart(12, '0')}`,
      user_id: `w${n}`,
    }));
    await sql`insert into spectrum.raw_events (payload)
              select p from jsonb_array_elements(${sql.json(fresh)}) p`;
    const [last] = await sql<{ id: number }[]>`
      select coalesce(max(run_id), 0)::int as id from spectrum.pipeline_runs`;
    const onWorkers = cluster.workers.map((w) => connect(w.url('spectrum'), { max: 1 }));
    try {
      await Promise.all(onWorkers.map((w) => w`call spectrum.process_pending(p_batch_size => 40)`));
    } finally {
      await Promise.all(onWorkers.map((w) => w.end()));
    }
    const runs = await sql<{ claimed: number }[]>`
      select claimed::int from spectrum.pipeline_runs where run_id > ${last!.id} order by run_id`;
    // Two runs, each with rows of its own node only, and nothing left.
    expect(runs).toHaveLength(2);
    for (const r of runs) expect(r.claimed).toBeGreaterThan(0);
    expect(runs.reduce((n, r) => n + r.claimed, 0)).toBe(300);
    const [left] = await sql<{ n: number; facts: number }[]>`
      select (select count(*)::int from spectrum.raw_events where status = 'pending') as n,
             (select count(*)::int from spectrum.fact_events where event_type = 'view') as facts`;
    expect(left).toEqual({ n: 0, facts: 300 });
  });

  it('runs maintenance: partitions ahead, retention of done rows, counts kept exact', async () => {
    await sql`select pg_sleep(0.2)`;
    await sql`call spectrum.maintenance(p_retention => '0.1 seconds', p_batch_size => 100)`;
    const [r] = await sql<{ done: number; shown: number; failed: number; finished: boolean }[]>`
      select (select count(*)::int from spectrum.raw_events where status = 'done') as done,
             (select events::int from spectrum.pipeline_status where status = 'done') as shown,
             (select count(*)::int from spectrum.raw_events where status = 'failed') as failed,
             (select finished_at is not null from spectrum.maintenance_runs
               order by run_id desc limit 1) as finished`;
    expect(r).toEqual({ done: 0, shown: 0, failed: 6, finished: true });
    const [health] = await sql<{ next: boolean }[]>`
      select next_fact_partition_exists as next from spectrum.health()`;
    expect(health!.next).toBe(true);
  });
});

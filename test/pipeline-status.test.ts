/*
 * spectrum.pipeline_status and the done and failed counters behind it (status_totals): exact
 * after the pipeline, reprocess, manual changes, deletes and TRUNCATE; cheap to read however
 * many rows are done or failed, and never read by parallel workers.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import { ACCOUNT, counterIsExact, fresh, statusIsExact, valid } from './helpers/fixtures.ts';

let db: TestDb;
beforeAll(async () => {
  db = await testDatabase('pipeline_status');
});
afterAll(async () => db?.drop());

describe('the done and failed counters behind pipeline_status', () => {
  // 40 done and 2 failed.
  beforeEach(async () => {
    await fresh(db.sql);
    await insertEvents(db.sql, [...valid(40), { account_id: 'x' }, { account_id: 'y' }]);
    await runPipeline(db.sql, 'p_batch_size => 7');
  });

  it('counts what the pipeline marks done and failed', async () => {
    expect(await counterIsExact(db.sql)).toBe(40);
    const [failed] =
      await db.sql`select events::int from spectrum.status_totals where status = 'failed'`;
    expect(failed!.events).toBe(2);
  });

  it('follows a manual DELETE of done and of failed rows', async () => {
    await db.sql`
      delete from spectrum.raw_events
       where id in (select id from spectrum.raw_events where status = 'done' order by id limit 3)`;
    await db.sql`
      delete from spectrum.raw_events
       where id in (select id from spectrum.raw_events where status = 'failed' limit 1)`;
    expect(await counterIsExact(db.sql)).toBe(37);
  });

  it('follows a manual UPDATE out of done, and back into done from failed', async () => {
    await db.sql`
      update spectrum.raw_events set status = 'failed', error_msg = 'failed by hand'
       where id in (select id from spectrum.raw_events where status = 'done' order by id limit 5)`;
    expect(await counterIsExact(db.sql)).toBe(35);
    await db.sql`update spectrum.raw_events set status = 'done' where status = 'failed'`;
    expect(await counterIsExact(db.sql)).toBe(42);
    await db.sql`update spectrum.raw_events set error_msg = null where status = 'done'`;
    expect(await counterIsExact(db.sql)).toBe(42);
  });

  it(
    'is repaired by recount_status after changes it cannot see ' +
      '(pending set done or failed by hand)',
    async () => {
      const [one, two, three] = await insertEvents(db.sql, valid(3));
      await db.sql`update spectrum.raw_events set status = 'done' where id in (${one!}, ${two!})`;
      await db.sql`
        update spectrum.raw_events set status = 'failed', error_msg = 'failed by hand'
         where id = ${three!}`;
      const drift =
        await db.sql`select status, events::int from spectrum.status_totals order by status`;
      expect(drift.map((d) => d.events)).toEqual([40, 2]);
      const [r] = await db.sql`select spectrum.recount_status() as n`;
      expect(Number(r!.n)).toBe(42);
      expect(await counterIsExact(db.sql)).toBe(42);
      await statusIsExact(db.sql);
    },
  );

  it('goes to 0 on TRUNCATE', async () => {
    await db.sql`truncate spectrum.raw_events`;
    expect(await counterIsExact(db.sql)).toBe(0);
    const totals = await db.sql`select events::int from spectrum.status_totals`;
    expect(totals.map((t) => t.events)).toEqual([0, 0]);
  });

  it("costs the pipeline's pending -> done or failed update no trigger call per row", async () => {
    await fresh(db.sql); // 50 rows of its own, all pending
    await insertEvents(db.sql, valid(50));
    const triggersOf = async (statement: string) => {
      let found: { 'Trigger Name': string; Calls: number }[] = [];
      await db.sql
        .begin(async (tx) => {
          const [row] = await tx.unsafe(`explain (analyze, format json) ${statement}`);
          const plan = row!['QUERY PLAN'];
          found = (typeof plan === 'string' ? JSON.parse(plan) : plan)[0].Triggers ?? [];
          throw new Error('rollback');
        })
        .catch((e) => {
          if (e.message !== 'rollback') throw e;
        });
      return Object.fromEntries(found.map((t) => [t['Trigger Name'], t.Calls]));
    };
    const pipeline = await triggersOf(
      `update spectrum.raw_events
          set status = case when random() < 0.5 then 'done' else 'failed' end,
              error_msg = 'by hand', processed_at = now(), attempts = attempts + 1
        where status = 'pending'`,
    );
    expect(pipeline.raw_events_status_changed).toBeUndefined();
    expect(pipeline.raw_events_status_flush).toBe(1);
    expect(pipeline.raw_events_status_reset).toBe(1);
    const retry = await triggersOf(
      `update spectrum.raw_events set attempts = attempts + 1 where status = 'pending'`,
    );
    expect(retry.raw_events_status_changed).toBeUndefined();
    await runPipeline(db.sql);
    const manual = await triggersOf(
      `update spectrum.raw_events set status = 'failed', error_msg = 'by hand' where status = 'done'`,
    );
    expect(manual.raw_events_status_changed).toBe(50);
    expect(await counterIsExact(db.sql)).toBe(50);
  });
});

describe('spectrum.pipeline_status', () => {
  beforeEach(() => fresh(db.sql));
  const bad = (n: number) =>
    Array.from({ length: n }, () => ({ event_type: 'click', account_id: 'nope' }));
  const set = (status: string, ids: string[]) =>
    db.sql`
      update spectrum.raw_events
         set status = ${status},
             error_msg = case when ${status}::text = 'failed' then 'failed by hand' end
       where id = any (${ids}::uuid[])`;
  const keepRows = () => db.sql`call spectrum.maintenance(p_retention => '10 years')`;

  it(
    "shows what the seed's group-by query finds after pipeline, reprocess, " +
      'manual updates, deletes and truncate',
    async () => {
      await statusIsExact(db.sql);
      // Oldest first: the failures, then the good events, each insert at its own received_at.
      const early = await insertEvents(db.sql, bad(4));
      const good = await insertEvents(db.sql, valid(30));
      await insertEvents(db.sql, [...valid(5), ...bad(3)]);
      await statusIsExact(db.sql);
      await runPipeline(db.sql, 'p_batch_size => 8');
      await statusIsExact(db.sql);
      await keepRows(); // the done floor goes up to good[0], past the early failures
      await statusIsExact(db.sql);

      // An early failure fixed and reprocessed: the batch makes done a row below the floor.
      await db.sql`
        update spectrum.raw_events set payload = payload || ${db.sql.json({ account_id: ACCOUNT })}
         where id = ${early[0]!}`;
      await db.sql`select spectrum.reprocess(ids => array[${early[0]!}]::uuid[])`;
      await statusIsExact(db.sql);
      await runPipeline(db.sql);
      await statusIsExact(db.sql);
      await keepRows();

      // By hand: done -> failed, failed -> done (below the floor), done -> processing -> pending
      // (the next run) -> done, processing -> failed.
      await set('failed', [early[0]!, good[0]!]);
      await statusIsExact(db.sql);
      await keepRows(); // the floor up to good[1]
      await set('done', [early[1]!]);
      await statusIsExact(db.sql);
      await set('processing', good.slice(1, 4));
      await statusIsExact(db.sql);
      await set('failed', [good[3]!]);
      await statusIsExact(db.sql);
      await runPipeline(db.sql);
      await statusIsExact(db.sql);

      // Reprocess by status, with failures from unexpected errors among them.
      await db.sql`create function public.status_boom() returns trigger language plpgsql as $$
        begin
          if new.event_type = 'boom' then raise exception 'kaboom' using errcode = 'XX125'; end if;
          return new;
        end $$`;
      await db.sql`
        create trigger boom before insert on spectrum.fact_events
        for each row execute function public.status_boom()`;
      try {
        await insertEvents(db.sql, [{ event_type: 'boom', account_id: ACCOUNT }, ...valid(2)]);
        await db.sql`
          select spectrum.reprocess(status => 'done', ids => ${good.slice(10, 15)}::uuid[])`;
        await db.sql`select spectrum.reprocess(status => 'failed')`;
        await statusIsExact(db.sql);
        await db.sql.unsafe('call spectrum.process_pending(p_max_attempts => 1)');
        await statusIsExact(db.sql);
      } finally {
        await db.sql`drop trigger boom on spectrum.fact_events`;
        await db.sql`drop function public.status_boom()`;
      }

      // Several statements in one transaction, then deletes of both kinds.
      await db.sql.begin(async (tx) => {
        await tx`
          update spectrum.raw_events set status = 'failed', error_msg = 'failed by hand'
           where id = any (${good.slice(20, 23)}::uuid[])`;
        await tx`delete from spectrum.raw_events where id = ${good[20]!}`;
        await tx`update spectrum.raw_events set status = 'done' where id = ${good[21]!}`;
      });
      await statusIsExact(db.sql);
      await db.sql`
        delete from spectrum.raw_events
         where id = any (${[...early, ...good.slice(5, 10)]}::uuid[])`;
      await statusIsExact(db.sql);
      await keepRows();
      await statusIsExact(db.sql);

      await db.sql`truncate spectrum.raw_events`;
      await statusIsExact(db.sql);
      await insertEvents(db.sql, [...valid(3), ...bad(2)]);
      await runPipeline(db.sql);
      await statusIsExact(db.sql);
    },
  );

  it('reads neither the done rows nor the failed rows: one row of each at most', async () => {
    // 50,000 old failures (the lowest ids, as retention leaves them), then done rows, then a
    // small backlog.
    await db.sql`
      insert into spectrum.raw_events
             (id, payload, received_at, status, processed_at, error_msg, attempts)
      select spectrum.uuid_v7(t), '{"event_type": "old"}', t,
             case when g <= 50000 then 'failed' when g <= 60000 then 'done' else 'pending' end,
             case when g <= 60000 then t end,
             case when g <= 50000 then 'account_id: missing' end,
             case when g <= 60000 then 1 else 0 end
        from generate_series(1, 60010) g,
             lateral (select now() - interval '30 days' + g * interval '1 second' as t) s`;
    await db.sql`vacuum analyze spectrum.raw_events`;
    /** Rows the view's plan takes from raw_events, returned or filtered out. */
    const rowsRead = async () => {
      const [row] = await db.sql.unsafe(
        'explain (analyze, format json) select * from spectrum.pipeline_status',
      );
      const plan = row!['QUERY PLAN'];
      let read = 0;
      const walk = (node: Record<string, unknown>) => {
        if (node['Relation Name'] === 'raw_events')
          read +=
            Number(node['Actual Rows']) * Number(node['Actual Loops']) +
            Number(node['Rows Removed by Filter'] ?? 0);
        for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? [])
          walk(child);
      };
      walk((typeof plan === 'string' ? JSON.parse(plan) : plan)[0].Plan);
      return read;
    };

    // Inserted by hand, not yet recounted: the done floor is still the nil uuid, so the search
    // for the oldest done row walks past every failure (the old view's cost, every time).
    expect(await rowsRead()).toBeGreaterThan(50000);
    // recount_status sets the floor, and so does maintenance (from the nil uuid again): the
    // 10 pending rows, the first failed entry, the first done row.
    await db.sql`select spectrum.recount_status()`;
    await statusIsExact(db.sql);
    expect(await rowsRead()).toBe(12);
    await db.sql`
      update spectrum.status_totals set id_floor = '00000000-0000-0000-0000-000000000000'`;
    await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
    expect(await rowsRead()).toBe(12);
    await statusIsExact(db.sql);
  });
});

describe('pipeline_status under a planner that likes parallel plans', () => {
  it('never starts parallel workers to count raw_events', async () => {
    const s = await db.sql.reserve();
    try {
      for (const g of [
        'parallel_setup_cost = 0',
        'parallel_tuple_cost = 0',
        'min_parallel_table_scan_size = 0',
        'min_parallel_index_scan_size = 0',
      ])
        await s.unsafe(`set ${g}`);
      const plans = [
        await s.unsafe('explain (format json) select * from spectrum.pipeline_status'),
        await s.unsafe(
          "explain (format json) select count(*) from spectrum.raw_events where status = 'pending'",
        ),
      ];
      /** Relations the plan scans with parallel workers. */
      const parallelScans = (plan: unknown) => {
        const found: string[] = [];
        const walk = (node: Record<string, unknown>) => {
          if (node['Parallel Aware'] && node['Relation Name'])
            found.push(String(node['Relation Name']));
          for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? [])
            walk(child);
        };
        walk((typeof plan === 'string' ? JSON.parse(plan) : plan)[0].Plan);
        return found;
      };
      for (const [row] of plans)
        expect(parallelScans(row!['QUERY PLAN'])).not.toContain('raw_events');
      // The same query on a copy without the option does scan in parallel: the check can fail.
      // (A temporary table is never scanned in parallel, so a plain one in public.)
      await s`create table public.raw_events (like spectrum.raw_events)`;
      try {
        const [control] = await s.unsafe(
          "explain (format json) select count(*) from public.raw_events where status = 'pending'",
        );
        expect(parallelScans(control!['QUERY PLAN'])).toContain('raw_events');
      } finally {
        await s`drop table public.raw_events`;
      }
    } finally {
      await s`reset all`;
      s.release();
    }
  });
});

/*
 * CALL spectrum.maintenance(): fact partitions ahead, retention of old fact partitions
 * (spectrum.settings) and of old done rows in chunks that skip locked rows, the cron history it
 * may not reach, its advisory lock, its arguments and who may call it. Each test starts from an
 * empty raw_events, with fact retention off.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect } from '../scripts/lib/db.ts';
import { insertEvents, testDatabase, type TestDb } from './helpers/db.ts';
import { ACCOUNT, counterIsExact, fresh, loginRole, type Login } from './helpers/fixtures.ts';

let db: TestDb;
let operator: Login;
beforeAll(async () => {
  db = await testDatabase('maintenance');
  operator = await loginRole(db, 'op', 'spectrum_operator');
});
afterAll(async () => {
  await operator?.drop();
  await db?.drop();
});

describe('CALL spectrum.maintenance()', () => {
  const months = (n: number) =>
    db.sql`select spectrum.missing_fact_partitions(array(
             select (date_trunc('month', now() at time zone 'UTC') + make_interval(months => m))
                    at time zone 'UTC'
               from generate_series(0, ${n}::int) m)) as missing`;
  const lastRun = async () =>
    (await db.sql`select * from spectrum.maintenance_runs order by run_id desc limit 1`)[0];
  /** n rows of a status received `ago`, one second apart, processed when received. */
  const insertOld = (status: string, ago: string, n: number) =>
    db.sql`
      insert into spectrum.raw_events
             (id, payload, received_at, status, processed_at, error_msg, attempts)
      select spectrum.uuid_v7(t), '{"event_type": "old"}', t, ${status},
             case when ${status} <> 'pending' then t end,
             case when ${status} = 'failed' then 'account_id: missing' end,
             case when ${status} <> 'pending' then 1 else 0 end
        from (select now() - ${ago}::interval + g * interval '1 second' as t
                from generate_series(1, ${n}::int) g) s
      returning id`.then((rows) => rows.map((r) => r.id as string));
  /** Old done, failed and pending rows, and recent done ones, counted. */
  const seedOld = async () => {
    const old = {
      done: await insertOld('done', '100 days', 25),
      failed: await insertOld('failed', '100 days', 4),
      pending: await insertOld('pending', '95 days', 2),
      recent: await insertOld('done', '10 days', 5),
    };
    await db.sql`select spectrum.recount_status()`;
    return old;
  };

  beforeEach(async () => {
    await fresh(db.sql);
    await db.sql`update spectrum.settings set fact_retention_months = null, fact_drop_after = '7 days'`;
  });

  it('creates the fact partitions of this month and three ahead', async () => {
    await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
    expect((await months(3))[0]!.missing).toBeNull();
    const run = await lastRun();
    expect(run!.finished_at).not.toBeNull();
    await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
    expect((await lastRun())!.partitions_created).toBe(0);
    expect((await months(5))[0]!.missing).toHaveLength(2);
    await db.sql`call spectrum.maintenance(p_months_ahead => 5, p_retention => '10 years')`;
    expect((await lastRun())!.partitions_created).toBe(2);
  });

  it('skips rows another transaction holds, never waiting for them', async () => {
    const old = await seedOld();
    const holder = await db.sql.reserve();
    try {
      await holder`begin`;
      await holder`select from spectrum.raw_events where id = ${old.done[0]!} for update`;
      const s = await db.sql.reserve();
      try {
        await s`set lock_timeout = '2s'`;
        await s`call spectrum.maintenance(p_batch_size => 7)`;
      } finally {
        await s`reset lock_timeout`;
        s.release();
      }
      await holder`rollback`;
    } finally {
      holder.release();
    }
    const run = await lastRun();
    expect(Number(run!.raw_deleted)).toBe(24);
    const left =
      await db.sql`select id from spectrum.raw_events where id = any (${old.done}::uuid[])`;
    expect(left.map((r) => r.id)).toEqual([old.done[0]]);
    await counterIsExact(db.sql);
  });

  it(
    'deletes only done rows older than the retention, in chunks, ' +
      'keeping failed and pending rows',
    async () => {
      const old = await seedOld();
      await db.sql`call spectrum.maintenance(p_batch_size => 7)`;
      expect(Number((await lastRun())!.raw_deleted)).toBe(25);
      const [r] = await db.sql`
        select count(*) filter (where id = any (${old.done}::uuid[]))::int as done,
               count(*) filter (where id = any (${old.failed}::uuid[]))::int as failed,
               count(*) filter (where id = any (${old.pending}::uuid[]))::int as pending,
               count(*) filter (where id = any (${old.recent}::uuid[]))::int as recent
          from spectrum.raw_events`;
      expect(r).toEqual({ done: 0, failed: 4, pending: 2, recent: 5 });
      expect(await counterIsExact(db.sql)).toBe(5);
      await db.sql`call spectrum.maintenance(p_retention => '5 days')`;
      expect(Number((await lastRun())!.raw_deleted)).toBe(5);
      expect(await counterIsExact(db.sql)).toBe(0);
    },
  );

  it(
    'deletes old done rows whose ids are not time-ordered (gen_random_uuid), ' +
      'keeping failed ones',
    async () => {
      await db.sql`
        insert into spectrum.raw_events
               (id, payload, received_at, status, processed_at, error_msg, attempts)
        select gen_random_uuid(), '{"event_type": "imported"}', now() - interval '200 days',
               case when g <= 1000 then 'done' else 'failed' end, now() - interval '200 days',
               case when g > 1000 then 'account_id: missing' end, 1
          from generate_series(1, 1100) g`;
      await db.sql`select spectrum.recount_status()`;
      // The only ones retention cannot find: random ids between the two id ranges it searches.
      const imported = (status: string) =>
        db.sql`
          select id from spectrum.raw_events
           where payload->>'event_type' = 'imported' and status = ${status} order by id`.then(
          (rows) => rows.map((r) => r.id as string),
        );
      const [gap] = await db.sql`
        select coalesce(array_agg(id order by id), '{}') as ids from spectrum.raw_events
         where payload->>'event_type' = 'imported' and status = 'done'
           and id > spectrum.uuid_v7(now() - interval '90 days')
           and id < spectrum.uuid_v7(now() + interval '1 day')`;
      const failed = await imported('failed');
      expect(failed).toHaveLength(100);

      await db.sql`call spectrum.maintenance(p_batch_size => 300)`;
      expect(Number((await lastRun())!.raw_deleted)).toBe(1000 - gap!.ids.length);
      expect(await imported('done')).toEqual(gap!.ids);
      expect(await imported('failed')).toEqual(failed);
      await counterIsExact(db.sql);
    },
  );

  it(
    'leaves cron.job_run_details alone, with a NOTICE, ' + 'when pg_cron lives in another database',
    async () => {
      const notices: string[] = [];
      const s = connect(db.url, { max: 1, onnotice: (n) => notices.push(String(n.message)) });
      try {
        await s`call spectrum.maintenance()`;
      } finally {
        await s.end();
      }
      const run = await lastRun();
      expect(run!.cron_details_deleted).toBeNull();
      expect(run!.note).toBeTruthy();
      expect(notices.length).toBeGreaterThanOrEqual(2); // the skip, and the summary
    },
  );

  it('returns quietly, doing nothing, while another session runs it', async () => {
    const holder = await db.sql.reserve();
    const notices: string[] = [];
    const s = connect(db.url, { max: 1, onnotice: (n) => notices.push(String(n.message)) });
    try {
      await holder`select pg_advisory_lock(hashtext('spectrum.maintenance'))`;
      const [before] = await db.sql`select count(*)::int as n from spectrum.maintenance_runs`;
      await s`call spectrum.maintenance()`;
      const [after] = await db.sql`select count(*)::int as n from spectrum.maintenance_runs`;
      expect(after!.n).toBe(before!.n);
      expect(notices).toHaveLength(1);
      await holder`select pg_advisory_unlock(hashtext('spectrum.maintenance'))`;
      await s`call spectrum.maintenance()`;
      const [later] = await db.sql`select count(*)::int as n from spectrum.maintenance_runs`;
      expect(later!.n).toBe(before!.n + 1);
    } finally {
      holder.release();
      await s.end();
    }
  });

  it(
    'holds no lock after a run that raised: ' + 'the next call, in that session or another, runs',
    async () => {
      const holder = await db.sql.reserve();
      const s = await db.sql.reserve();
      const advisoryLocks = async () =>
        (
          await db.sql`
            select count(*)::int as n from pg_locks
             where locktype = 'advisory'
               and database = (select oid from pg_database where datname = current_database())`
        )[0]!.n;
      try {
        // Retention needs raw_events, which another session holds: the run raises half-way.
        await holder`begin`;
        await holder`lock table spectrum.raw_events in exclusive mode`;
        await s`set lock_timeout = '300ms'`;
        const err = await s`call spectrum.maintenance()`.catch((e) => e);
        expect(err.code).toBe('55P03');
        expect((await lastRun())!.finished_at).toBeNull();
        await holder`rollback`;
        expect(await advisoryLocks()).toBe(0);

        const [before] = await db.sql`select max(run_id)::int as id from spectrum.maintenance_runs`;
        await s`call spectrum.maintenance()`;
        const again = await lastRun();
        expect(Number(again!.run_id)).toBe(before!.id + 1);
        expect(again!.finished_at).not.toBeNull();
        await db.sql`call spectrum.maintenance()`;
        expect(Number((await lastRun())!.run_id)).toBe(before!.id + 2);
        expect(await advisoryLocks()).toBe(0);
      } finally {
        await holder`rollback`;
        await s`reset lock_timeout`;
        holder.release();
        s.release();
      }
    },
  );

  describe('fact retention', () => {
    /** The first day (UTC) of the month `back` months before this one. */
    const monthsAgo = async (back: number) =>
      (
        await db.sql`
          select (date_trunc('month', now() at time zone 'UTC') - make_interval(months => ${back}))
                 at time zone 'UTC' as m`
      )[0]!.m as Date;
    const attached = async () =>
      (await db.sql`select partition::text as p from spectrum.fact_partition_ranges()`).map(
        (r) => r.p as string,
      );
    const name = (m: Date) =>
      `spectrum.fact_events_${m.toISOString().slice(0, 7).replace('-', '_')}`;
    /** Partitions 40, 13 and 12 months back, each with one fact, and this month's. */
    const seedMonths = async () => {
      const months = [await monthsAgo(40), await monthsAgo(13), await monthsAgo(12)];
      // What earlier tests retired or wrote goes first.
      for (const { table_name } of await db.sql`
        select table_name from spectrum.detached_fact_partitions where dropped_at is null`)
        await db.sql`drop table if exists ${db.sql(`spectrum.${table_name}`)}`;
      await db.sql`truncate spectrum.detached_fact_partitions`;
      await db.sql`delete from spectrum.fact_events where event_type in ('old', 'late')`;
      await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
      await db.sql`
        select spectrum.ensure_fact_partitions(${months.map((m) => m.toISOString())}::timestamptz[])`;
      await db.sql`
        insert into spectrum.dim_accounts (account_id, first_seen_at, last_seen_at)
        values (${ACCOUNT}, now(), now()) on conflict do nothing`;
      for (const m of months)
        await db.sql`
          insert into spectrum.fact_events (event_id, raw_event_id, event_type, occurred_at,
                                            received_at, account_id, properties)
          values (gen_random_uuid(), gen_random_uuid(), 'old', ${m}::timestamptz + interval '1 day',
                  now(), ${ACCOUNT}, '{}')`;
      return months;
    };

    it('is off by default: no partition is detached, however old', async () => {
      const months = await seedMonths();
      await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
      expect(await attached()).toEqual(expect.arrayContaining(months.map(name)));
      const run = await lastRun();
      expect(run).toMatchObject({
        fact_retention_months: null,
        partitions_detached: 0,
        partitions_overdue: null,
      });
    });

    it(
      'detaches partitions older than fact_retention_months under a new name, ' +
        'and the pipeline makes the month again for a late event',
      async () => {
        const [m40, m13, m12] = await seedMonths();
        await db.sql`update spectrum.settings set fact_retention_months = 12`;
        await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
        expect(await lastRun()).toMatchObject({
          fact_retention_months: 12,
          partitions_detached: 2,
          partitions_dropped: 0,
          partitions_overdue: 0,
        });
        expect((await lastRun())!.note).not.toMatch(/fact partition/);
        const left = await attached();
        expect(left).toContain(name(m12!));
        expect(left).not.toContain(name(m13!));
        expect(left).not.toContain(name(m40!));
        const detached = await db.sql`
          select table_name, range_from
            from spectrum.detached_fact_partitions where dropped_at is null order by range_from`;
        expect(detached.map((d) => d.range_from)).toEqual([m40, m13]);
        const [seen] = await db.sql`
          select count(*) filter (where occurred_at < ${m12!})::int as retired,
                 count(*) filter (where occurred_at >= ${m12!})::int as kept
            from spectrum.fact_events where event_type = 'old'`;
        expect(seen!.retired).toBe(0);
        expect(seen!.kept).toBeGreaterThan(0);
        for (const d of detached) {
          const [t] = await db.sql`
            select count(*)::int as n from ${db.sql(`spectrum.${d.table_name}`)}`;
          expect(t!.n).toBe(1); // kept whole until dropped
        }
        // A late event of a retired month: its partition is made again, under the usual name.
        await insertEvents(db.sql, [
          { event_type: 'late', account_id: ACCOUNT, timestamp: m13!.toISOString() },
        ]);
        await db.sql`call spectrum.process_pending()`;
        const [raw] = await db.sql`
          select status from spectrum.raw_events where payload->>'event_type' = 'late'`;
        expect(raw!.status).toBe('done');
        expect(await attached()).toContain(name(m13!));
      },
    );

    it('drops detached partitions fact_drop_after later, never when it is null', async () => {
      await seedMonths();
      await db.sql`update spectrum.settings set fact_retention_months = 12, fact_drop_after = null`;
      await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
      const kept = await db.sql`
        select table_name from spectrum.detached_fact_partitions where dropped_at is null`;
      expect(kept.length).toBeGreaterThanOrEqual(2);
      await db.sql`update spectrum.detached_fact_partitions set detached_at = now() - interval '1 year'`;
      await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
      expect((await lastRun())!.partitions_dropped).toBe(0);
      await db.sql`update spectrum.settings set fact_drop_after = '30 days'`;
      await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
      expect((await lastRun())!.partitions_dropped).toBe(kept.length);
      for (const { table_name } of kept) {
        const [t] = await db.sql`select to_regclass(${`spectrum.${table_name}`}) as t`;
        expect(t!.t).toBeNull();
      }
      const [left] = await db.sql`
        select count(*)::int as n from spectrum.detached_fact_partitions where dropped_at is null`;
      expect(left!.n).toBe(0);
    });

    it(
      'leaves a partition a running batch holds for the next run, ' +
        'after a 5 s lock wait, keeping raw retention going',
      async () => {
        const [m40] = await seedMonths();
        await insertOld('done', '100 days', 3);
        await db.sql`select spectrum.recount_status()`;
        await db.sql`update spectrum.settings set fact_retention_months = 12, fact_drop_after = '0'`;
        const batch = await db.sql.reserve();
        try {
          // A batch's uncommitted dimension upsert and fact insert, as process_pending holds them.
          await batch`begin`;
          await batch`
            update spectrum.dim_accounts set last_seen_at = now() where account_id = ${ACCOUNT}`;
          await batch`
            insert into spectrum.fact_events (event_id, raw_event_id, event_type, occurred_at,
                                              received_at, account_id, properties)
            values (gen_random_uuid(), gen_random_uuid(), 'late', ${m40!}::timestamptz, now(),
                    ${ACCOUNT}, '{}')`;
          const started = performance.now();
          await db.sql`call spectrum.maintenance(p_retention => '90 days')`;
          expect(performance.now() - started).toBeGreaterThan(4500);
          const run = await lastRun();
          expect(run).toMatchObject({ partitions_detached: 0, partitions_overdue: 2 });
          expect(Number(run!.raw_deleted)).toBe(3);
          expect(run!.finished_at).not.toBeNull();
          expect(run!.note).toMatch(/not detached/);
          await batch`commit`;
        } finally {
          await batch`rollback`.catch(() => {});
          batch.release();
        }
        expect(await attached()).toContain(name(m40!));
        await db.sql`call spectrum.maintenance(p_retention => '90 days')`;
        expect(await lastRun()).toMatchObject({
          partitions_detached: 2,
          partitions_dropped: 2,
          partitions_overdue: 0,
        });
        expect(await attached()).not.toContain(name(m40!));
      },
    );

    it('refuses a retention under one month', async () => {
      const err = await db.sql`update spectrum.settings set fact_retention_months = 0`.catch(
        (e) => e,
      );
      expect(err.code).toBe('23514');
    });
  });

  it('refuses bad arguments with 22023', async () => {
    for (const args of [
      'p_months_ahead => -1',
      "p_retention => '0 days'",
      'p_batch_size => 0',
      "p_cron_history => '-1 day'",
    ]) {
      const err = await db.sql.unsafe(`call spectrum.maintenance(${args})`).catch((e) => e);
      expect(err.code, args).toBe('22023');
    }
  });

  it('is not callable by the operator role', async () => {
    await db.sql`call spectrum.maintenance()`; // a run for the operator to read
    const err = await operator.sql`call spectrum.maintenance()`.catch((e) => e);
    expect(err.code).toBe('42501');
    const runs = await operator.sql`select * from spectrum.maintenance_runs`;
    expect(runs.length).toBeGreaterThan(0);
  });
});

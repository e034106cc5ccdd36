/*
 * CALL spectrum.maintenance(): fact partitions ahead, retention of old done rows in chunks
 * that skip locked rows, the cron history it may not reach, its advisory lock, its arguments
 * and who may call it. Each test starts from an empty raw_events.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect } from '../scripts/lib/db.ts';
import { testDatabase, type TestDb } from './helpers/db.ts';
import { counterIsExact, fresh, loginRole, type Login } from './helpers/fixtures.ts';

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

  beforeEach(() => fresh(db.sql));

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

/* process_pending: outcomes, exactly-once facts, partitions, runs, unexpected errors. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import { ACCOUNT as A } from './helpers/fixtures.ts';

let db: TestDb;
beforeAll(async () => {
  db = await testDatabase('pipeline');
});
afterAll(async () => db?.drop());
beforeEach(async () => {
  await db.sql`truncate spectrum.raw_events, spectrum.event_registry, spectrum.pipeline_runs`;
  await db.sql`truncate spectrum.fact_events, spectrum.dim_users, spectrum.dim_geography,
                        spectrum.dim_accounts cascade`;
  await db.sql`update spectrum.status_totals set events = 0`;
});

const B = '0b7e0d7e-2f55-4c8b-9d6f-3f1a2b3c4d5e';
const E1 = '11111111-1111-4111-8111-111111111111';
const iso = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString();

const raw = (ids: string[]) =>
  db.sql`
    select id, status, error_msg, attempts, processed_at
      from spectrum.raw_events where id = any(${ids}::uuid[])`.then((rows) =>
    ids.map((id) => rows.find((r) => r.id === id)!),
  );

describe('one tick', () => {
  it('marks valid events done with exactly one fact and their dimensions', async () => {
    const [withId, withoutId] = await insertEvents(db.sql, [
      {
        event_id: E1,
        event_type: 'click',
        account_id: A,
        user_id: 'u1',
        timestamp: iso(1),
        geo: { country: 'FR', city: 'Paris' },
        properties: { a: 1 },
      },
      { event_type: 'view', account_id: A, timestamp: iso(2) },
    ]);
    await runPipeline(db.sql);
    const rows = await raw([withId!, withoutId!]);
    for (const r of rows) {
      expect(r.status).toBe('done');
      expect(r.error_msg).toBeNull();
      expect(r.processed_at).toBeInstanceOf(Date);
      expect(r.attempts).toBe(1);
    }
    const facts = await db.sql`select * from spectrum.fact_events order by event_type`;
    expect(facts.map((f) => [f.event_type, f.event_id, f.raw_event_id])).toEqual([
      ['click', E1, withId],
      ['view', withoutId, withoutId],
    ]);
    expect(facts[0]!.user_id).toBe('u1');
    expect(facts[0]!.properties).toEqual({ a: 1 });
    expect(facts[1]!.user_id).toBeNull();
    expect(facts[1]!.geo_id).toBeNull();
    expect(facts[1]!.properties).toEqual({});
    const [acct] = await db.sql`select * from spectrum.dim_accounts`;
    expect(acct!.account_id).toBe(A);
    expect(acct!.first_seen_at.getTime()).toBeLessThan(acct!.last_seen_at.getTime());
    expect(await db.sql`select account_id, user_id from spectrum.dim_users`).toEqual([
      { account_id: A, user_id: 'u1' },
    ]);
    const geo = await db.sql`select * from spectrum.dim_geography`;
    expect(geo).toHaveLength(1);
    expect(geo[0]).toMatchObject({
      country: 'FR',
      region: null,
      city: 'Paris',
      geo_id: facts[0]!.geo_id,
    });
  });

  it(
    'fails an invalid event with a precise message ' + 'and leaves the rest of the batch alone',
    async () => {
      const ids = await insertEvents(db.sql, [
        { event_type: 'ok', account_id: A },
        { event_type: 'click', account_id: 'abc' },
        { event_type: 'ok2', account_id: B },
      ]);
      await runPipeline(db.sql);
      const rows = await raw(ids);
      expect(rows.map((r) => r.status)).toEqual(['done', 'failed', 'done']);
      expect(rows[1]!.error_msg).toBe('account_id: "abc" is not a uuid');
      expect(rows[1]!.processed_at).toBeInstanceOf(Date);
      const [n] = await db.sql`
        select count(*)::int as n from spectrum.fact_events where raw_event_id = ${ids[1]!}`;
      expect(n!.n).toBe(0);
    },
  );

  it('fails events outside the accepted time window', async () => {
    const ids = await insertEvents(db.sql, [
      { event_type: 'old', account_id: A, timestamp: iso(6 * 366) },
      { event_type: 'future', account_id: A, timestamp: iso(-2) },
      { event_type: 'recent', account_id: A, timestamp: iso(4 * 365) },
    ]);
    await runPipeline(db.sql);
    const rows = await raw(ids);
    expect(rows.map((r) => r.status)).toEqual(['failed', 'failed', 'done']);
    expect(rows[0]!.error_msg).toMatch(
      new RegExp(
        '^timestamp: ".*" is outside the accepted window ' +
          '\\(5 years before to 1 day after received_at\\)$',
      ),
    );
  });

  it(
    'records one pipeline_runs row per call with its counts, ' + 'committing batch by batch',
    async () => {
      await insertEvents(
        db.sql,
        [...Array(35)].map((_, i) => ({
          event_type: `t${i}`,
          account_id: A,
          ...(i % 10 === 0 ? { timestamp: 'nope' } : {}),
        })),
      );
      await runPipeline(db.sql, 'p_batch_size => 10');
      await runPipeline(db.sql);
      const runs = await db.sql`select * from spectrum.pipeline_runs order by run_id`;
      expect(runs).toHaveLength(2);
      expect(runs[0]).toMatchObject({
        batches: 4,
        claimed: '35',
        done: '31',
        failed: '4',
        retried: '0',
        stopped_because: 'no pending rows',
      });
      expect(runs[0]!.finished_at.getTime()).toBeGreaterThanOrEqual(runs[0]!.started_at.getTime());
      expect(runs[1]).toMatchObject({ batches: 0, claimed: '0' });
      const status = await db.sql`
        select status, events::int from spectrum.pipeline_status
         where status in ('done', 'failed')`;
      expect(status).toEqual([
        { status: 'done', events: 31 },
        { status: 'failed', events: 4 },
      ]);
    },
  );

  it('stops at the batch limit and within its time budget', async () => {
    await insertEvents(
      db.sql,
      [...Array(30)].map((_, i) => ({ event_type: `t${i}`, account_id: A })),
    );
    await runPipeline(db.sql, 'p_batch_size => 10, p_max_batches => 2');
    const [limited] = await db.sql`
      select batches, stopped_because from spectrum.pipeline_runs order by run_id desc limit 1`;
    expect(limited).toEqual({ batches: 2, stopped_because: 'batch limit' });
    await runPipeline(db.sql, `p_batch_size => 1, p_time_budget => '1 microsecond'`);
    const [budget] = await db.sql`
      select batches, stopped_because from spectrum.pipeline_runs order by run_id desc limit 1`;
    expect(budget!.stopped_because).toBe('time budget');
    expect(budget!.batches).toBeLessThanOrEqual(1);
    const [left] =
      await db.sql`select count(*)::int as n from spectrum.raw_events where status = 'pending'`;
    expect(left!.n).toBeGreaterThan(0);
  });

  it('refuses bad arguments with SQLSTATE 22023', async () => {
    for (const args of ['p_batch_size => 0', `p_time_budget => '-1 s'`, 'p_max_attempts => 0']) {
      expect((await runPipeline(db.sql, args).catch((e) => e)).code, args).toBe('22023');
    }
  });

  it('returns rows left processing to the queue', async () => {
    const [id] = await insertEvents(db.sql, [{ event_type: 'stuck', account_id: A }]);
    await db.sql`update spectrum.raw_events set status = 'processing' where id = ${id!}`;
    await runPipeline(db.sql);
    expect((await raw([id!]))[0]!.status).toBe('done');
  });

  it('stops when cancelled, counting no attempt against the rows it held', async () => {
    await db.sql`truncate spectrum.raw_events`;
    await insertEvents(db.sql, [{ event_type: 'cancel', account_id: A }]);
    await db.sql`select spectrum.ensure_fact_partitions(array[now()])`;
    // The batch waits on a lock inside process_claimed, where its error handler runs, and is
    // cancelled there.
    const locker = await db.sql.reserve();
    const worker = await db.sql.reserve();
    await locker`begin`;
    await locker`lock table spectrum.dim_accounts in share mode`;
    const [{ pid }] = (await worker`select pg_backend_pid() as pid`) as unknown as [
      { pid: number },
    ];
    const call = worker`call spectrum.process_pending()`.catch((err) => err);
    for (let i = 0; i < 200; i++) {
      const [w] = await db.sql`select wait_event_type from pg_stat_activity where pid = ${pid}`;
      if (w?.wait_event_type === 'Lock') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await db.sql`select pg_cancel_backend(${pid})`;
    const e = await call;
    await locker`rollback`;
    locker.release();
    worker.release();
    expect(e.code).toBe('57014');
    const [r] = await db.sql<{ counted: number; pending: number }[]>`
      select count(*) filter (where attempts > 0 and status = 'pending')::int as counted,
             count(*) filter (where status = 'pending')::int as pending
        from spectrum.raw_events`;
    expect(r).toEqual({ counted: 0, pending: 1 });
  });
});

describe('exactly once into facts', () => {
  const facts = () =>
    db.sql`
      select event_id, raw_event_id, event_type, account_id, occurred_at
        from spectrum.fact_events`;

  it('keeps one fact for a producer retry, from the most recently received version', async () => {
    const [first] = await insertEvents(db.sql, [{ event_id: E1, event_type: 'v1', account_id: A }]);
    const [second] = await insertEvents(db.sql, [
      { event_id: E1, event_type: 'v2', account_id: A },
    ]);
    await runPipeline(db.sql);
    const f = await facts();
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ event_id: E1, raw_event_id: second, event_type: 'v2' });
    const rows = await raw([first!, second!]);
    expect(rows.map((r) => r.status)).toEqual(['done', 'done']);
    const [run] = await db.sql`select superseded::int from spectrum.pipeline_runs`;
    expect(run!.superseded).toBe(1);
  });

  it(
    'replaces the fact when a later version arrives in a later tick, ' +
      'even in another month and account',
    async () => {
      await insertEvents(db.sql, [
        { event_id: E1, event_type: 'v1', account_id: A, timestamp: iso(400) },
      ]);
      await runPipeline(db.sql);
      const [later] = await insertEvents(db.sql, [
        { event_id: E1, event_type: 'v2', account_id: B, timestamp: iso(1) },
      ]);
      await runPipeline(db.sql);
      const f = await facts();
      expect(f).toHaveLength(1);
      expect(f[0]).toMatchObject({ raw_event_id: later, event_type: 'v2', account_id: B });
    },
  );

  it('never lets an older version win, however often it is reprocessed', async () => {
    const [older] = await insertEvents(db.sql, [
      { event_id: E1, event_type: 'old', account_id: A },
    ]);
    await runPipeline(db.sql);
    const [newer] = await insertEvents(db.sql, [
      { event_id: E1, event_type: 'new', account_id: A },
    ]);
    await runPipeline(db.sql);
    for (let i = 0; i < 3; i++) {
      await db.sql`update spectrum.raw_events set status = 'pending' where id = ${older!}`;
      await runPipeline(db.sql);
    }
    const f = await facts();
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ raw_event_id: newer, event_type: 'new' });
  });

  it('replaces facts of reprocessed events instead of duplicating them', async () => {
    const ids = await insertEvents(
      db.sql,
      [...Array(50)].map((_, i) => ({
        event_type: `t${i}`,
        account_id: i % 2 ? A : B,
        user_id: `u${i % 7}`,
      })),
    );
    await runPipeline(db.sql);
    for (let i = 0; i < 2; i++) {
      await db.sql`
        update spectrum.raw_events set status = 'pending' where id = any(${ids}::uuid[])`;
      await runPipeline(db.sql, 'p_batch_size => 7');
    }
    const [c] = await db.sql`
      select count(*)::int as n, count(distinct event_id)::int as d from spectrum.fact_events`;
    expect(c).toEqual({ n: 50, d: 50 });
    const [r] = await db.sql`
      select count(*)::int as n from spectrum.raw_events where status = 'done' and attempts = 3`;
    expect(r!.n).toBe(50);
  });
});

describe('fact partitions', () => {
  it('creates the monthly partitions events need, and never a default partition', async () => {
    const months = [0, 40, 800, 1500];
    await insertEvents(
      db.sql,
      months.map((d) => ({ event_type: 'p', account_id: A, timestamp: iso(d) })),
    );
    await runPipeline(db.sql);
    const [done] =
      await db.sql`select count(*)::int as n from spectrum.raw_events where status = 'done'`;
    expect(done!.n).toBe(4);
    const parts = await db.sql`
      select c.relname, pg_get_expr(c.relpartbound, c.oid) as bound
        from pg_inherits i join pg_class c on c.oid = i.inhrelid
       where i.inhparent = 'spectrum.fact_events'::regclass`;
    expect(parts.some((p) => /DEFAULT/.test(p.bound))).toBe(false);
    for (const d of months) {
      const name = `fact_events_${iso(d).slice(0, 7).replace('-', '_')}`;
      expect(parts.map((p) => p.relname)).toContain(name);
    }
    const [n] = await db.sql`select count(*)::int as n from spectrum.fact_events`;
    expect(n!.n).toBe(4);
  });
});

describe('unexpected errors', () => {
  it('leaves the batch pending, no attempt counted, when the server runs out of disk', async () => {
    // A full disk (53100) is the server's trouble: no bisecting, no attempt, the call ends.
    await db.sql`create function pg_temp_full() returns trigger language plpgsql as $$
      begin
        raise exception 'could not extend file: No space left on device' using errcode = '53100';
      end $$`;
    await db.sql`
      create trigger full_disk before insert on spectrum.fact_events
      for each row execute function pg_temp_full()`;
    try {
      const ids = await insertEvents(db.sql, [
        { event_type: 'fine', account_id: A },
        { event_type: 'fine too', account_id: B },
      ]);
      await runPipeline(db.sql, 'p_max_attempts => 1');
      const rows = await raw(ids);
      expect(rows.map((r) => [r.status, r.attempts, r.error_msg])).toEqual([
        ['pending', 0, null],
        ['pending', 0, null],
      ]);
      const [run] = await db.sql`
        select stopped_because, retried::int, failed::int
          from spectrum.pipeline_runs order by run_id desc limit 1`;
      expect(run).toEqual({ stopped_because: 'server resources', retried: 0, failed: 0 });
    } finally {
      await db.sql`drop trigger full_disk on spectrum.fact_events`;
      await db.sql`drop function pg_temp_full()`;
    }
    await runPipeline(db.sql);
    const [left] = await db.sql`
      select count(*)::int as n from spectrum.raw_events where status = 'pending'`;
    expect(left!.n).toBe(0);
  });

  it(
    'isolates a row that raises: it stays pending with attempts raised, ' +
      'then fails with its SQLSTATE',
    async () => {
      await db.sql`create function pg_temp_boom() returns trigger language plpgsql as $$
        begin
          if new.event_type = 'boom' then raise exception 'kaboom' using errcode = 'XX123'; end if;
          return new;
        end $$`;
      await db.sql`
        create trigger boom before insert on spectrum.fact_events
        for each row execute function pg_temp_boom()`;
      try {
        const ids = await insertEvents(db.sql, [
          { event_type: 'fine', account_id: A },
          { event_type: 'boom', account_id: A },
          { event_type: 'fine too', account_id: B },
        ]);
        await runPipeline(db.sql, 'p_max_attempts => 2');
        let rows = await raw(ids);
        expect(rows.map((r) => [r.status, r.attempts])).toEqual([
          ['done', 1],
          ['pending', 1],
          ['done', 1],
        ]);
        expect(rows[1]!.error_msg).toMatch(/SQLSTATE XX123: kaboom/);
        const [run] = await db.sql`
          select done::int, retried::int from spectrum.pipeline_runs order by run_id desc limit 1`;
        expect(run).toEqual({ done: 2, retried: 1 });

        await runPipeline(db.sql, 'p_max_attempts => 2');
        rows = await raw(ids);
        expect(rows[1]!.status).toBe('failed');
        expect(rows[1]!.attempts).toBe(2);
        expect(rows[1]!.error_msg).toMatch(
          /^unexpected error after 2 attempts: SQLSTATE XX123: kaboom/,
        );
        const [n] = await db.sql`select count(*)::int as n from spectrum.fact_events`;
        expect(n!.n).toBe(2);
      } finally {
        await db.sql`drop trigger boom on spectrum.fact_events`;
        await db.sql`drop function pg_temp_boom()`;
      }
    },
  );

  it(
    'counts an attempt for the whole batch on a lock timeout ' + 'and stops until the next tick',
    async () => {
      await insertEvents(db.sql, [{ event_type: 'seed', account_id: A, timestamp: iso(3) }]);
      await runPipeline(db.sql);
      const ids = await insertEvents(db.sql, [
        { event_type: 'a', account_id: A, timestamp: iso(5) },
        { event_type: 'b', account_id: B },
      ]);
      const holder = await db.sql.reserve();
      const worker = await db.sql.reserve();
      try {
        await holder`begin`;
        await holder`select * from spectrum.dim_accounts where account_id = ${A} for update`;
        await worker`set lock_timeout = '200ms'`;
        await worker`call spectrum.process_pending()`;
        const rows = await raw(ids);
        expect(rows.map((r) => [r.status, r.attempts])).toEqual([
          ['pending', 1],
          ['pending', 1],
        ]);
        expect(rows[0]!.error_msg).toMatch(/SQLSTATE 55P03/);
        const [run] = await worker`
          select stopped_because, retried::int
            from spectrum.pipeline_runs order by run_id desc limit 1`;
        expect(run).toEqual({ stopped_because: 'contention', retried: 2 });
      } finally {
        await holder`rollback`;
        holder.release();
        await worker`reset lock_timeout`;
        worker.release();
      }
      await runPipeline(db.sql);
      expect((await raw(ids)).map((r) => r.status)).toEqual(['done', 'done']);
    },
  );
});

describe('a stored version that becomes invalid', () => {
  it('loses its fact when reprocessed, and gets it back once valid again', async () => {
    const [id] = await insertEvents(db.sql, [{ event_id: E1, event_type: 'good', account_id: A }]);
    await runPipeline(db.sql);
    const count = async () =>
      (await db.sql`select count(*)::int as n from spectrum.fact_events where event_id = ${E1}`)[0]!
        .n;
    expect(await count()).toBe(1);

    await db.sql`
      update spectrum.raw_events set payload = payload - 'event_type', status = 'pending'
       where id = ${id!}`;
    await runPipeline(db.sql);
    const [r] = await raw([id!]);
    expect(r).toMatchObject({ status: 'failed', error_msg: 'event_type: missing' });
    expect(await count()).toBe(0);

    await db.sql`
      update spectrum.raw_events
         set payload = payload || '{"event_type": "fixed"}', status = 'pending'
       where id = ${id!}`;
    await runPipeline(db.sql);
    const f = await db.sql`
      select event_type, raw_event_id from spectrum.fact_events where event_id = ${E1}`;
    expect(f).toEqual([{ event_type: 'fixed', raw_event_id: id }]);
  });

  it('does not touch the fact when an invalid newer version arrives from a producer', async () => {
    const [good] = await insertEvents(db.sql, [
      { event_id: E1, event_type: 'good', account_id: A },
    ]);
    await runPipeline(db.sql);
    const [bad] = await insertEvents(db.sql, [
      { event_id: E1, event_type: 'retry', account_id: 'broken' },
    ]);
    await runPipeline(db.sql);
    expect((await raw([bad!]))[0]!.status).toBe('failed');
    const f = await db.sql`select raw_event_id from spectrum.fact_events where event_id = ${E1}`;
    expect(f).toEqual([{ raw_event_id: good }]);
  });
});

describe('isolating a bug in a large batch', () => {
  it('bisects down to the raising row instead of retrying every row alone', async () => {
    await db.sql`create function pg_temp_boom2() returns trigger language plpgsql as $$
      begin
        if new.event_type = 'boom' then raise exception 'kaboom' using errcode = 'XX124'; end if;
        return new;
      end $$`;
    await db.sql`
      create trigger boom2 before insert on spectrum.fact_events
      for each row execute function pg_temp_boom2()`;
    const s = await db.sql.reserve();
    try {
      const payloads = [...Array(2000)].map((_, i) => ({
        event_type: i === 1234 ? 'boom' : `t${i % 5}`,
        account_id: i % 2 ? A : B,
      }));
      const ids = await insertEvents(db.sql, payloads);
      await s`set track_functions = 'all'`;
      const calls = async () => {
        await s`select pg_stat_force_next_flush()`;
        const [c] = await s`
          select coalesce(sum(calls), 0)::int as n
            from pg_stat_user_functions where funcname = 'process_claimed'`;
        return c!.n;
      };
      const before = await calls();
      await s`call spectrum.process_pending(p_batch_size => 2000)`;
      const used = (await calls()) - before;
      // One call for the batch, then about 2·log2(2000) ≈ 22 for the halves down to one row.
      expect(used).toBeGreaterThan(2);
      expect(used).toBeLessThan(40);
      const rows = await raw(ids);
      expect(rows.filter((r) => r.status === 'done')).toHaveLength(1999);
      expect(rows[1234]).toMatchObject({ status: 'pending', attempts: 1 });
    } finally {
      await s`reset track_functions`;
      s.release();
      await db.sql`drop trigger boom2 on spectrum.fact_events`;
      await db.sql`drop function pg_temp_boom2()`;
    }
  });
});

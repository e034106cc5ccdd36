/*
 * spectrum.reprocess, called from psql as an operator would: its filters (on the row and on what
 * the payload says), its dry run, what it re-queues and returns, the fact of a reprocessed event,
 * and who may call it. Each test starts from six done and three failed events. The chunked form,
 * spectrum.reprocess_in_chunks: reprocess-in-chunks.test.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import {
  ACCOUNT,
  counterIsExact,
  fresh,
  loginRole,
  valid,
  type Login,
} from './helpers/fixtures.ts';

let db: TestDb;
let operator: Login;
beforeAll(async () => {
  db = await testDatabase('reprocess');
  operator = await loginRole(db, 'op', 'spectrum_operator');
});
afterAll(async () => {
  await operator?.drop();
  await db?.drop();
});

const statusOf = async (ids: string[]) =>
  (
    await db.sql`select status from spectrum.raw_events where id = any (${ids}::uuid[]) order by id`
  ).map((r) => r.status as string);

describe('spectrum.reprocess', () => {
  let good: string[];
  let bad: string[];
  beforeEach(async () => {
    await fresh(db.sql);
    good = await insertEvents(db.sql, valid(6));
    bad = await insertEvents(db.sql, [
      { event_type: 'click', account_id: 'abc' },
      { event_type: 'click', account_id: 'def' },
      { account_id: ACCOUNT },
    ]);
    await runPipeline(db.sql);
  });

  it('refuses a call without any filter with 22023 and a hint', async () => {
    const err = await db.sql`select spectrum.reprocess()`.catch((e) => e);
    expect(err.code).toBe('22023');
    expect(err.hint).toBeTruthy();
  });

  it('refuses an unknown status, and pending, with 22023 and a hint', async () => {
    for (const status of ['lost', 'pending', 'FAILED']) {
      const err = await db.sql`select spectrum.reprocess(status => ${status})`.catch((e) => e);
      expect(err.code, status).toBe('22023');
      expect(err.hint, status).toBeTruthy();
    }
  });

  it('refuses an empty received window with 22023', async () => {
    const err = await db.sql`
      select spectrum.reprocess(received_after => now(),
                                received_before => now() - interval '1 hour')`.catch((e) => e);
    expect(err.code).toBe('22023');
  });

  it(
    're-queues failed rows by status and returns how many; ' +
      'unchanged, they fail again the same way',
    async () => {
      const before = await db.sql`
        select id, error_msg from spectrum.raw_events where status = 'failed' order by id`;
      expect(before).toHaveLength(3);
      const [r] = await db.sql`select spectrum.reprocess(status => 'failed') as n`;
      expect(Number(r!.n)).toBe(3);
      const reset = await db.sql`
        select status, attempts, error_msg, processed_at
          from spectrum.raw_events where id = any (${bad}::uuid[])`;
      for (const row of reset)
        expect(row).toEqual({
          status: 'pending',
          attempts: 0,
          error_msg: null,
          processed_at: null,
        });
      expect(await statusOf(good)).toEqual(good.map(() => 'done'));

      await runPipeline(db.sql);
      const after = await db.sql`
        select id, error_msg from spectrum.raw_events where status = 'failed' order by id`;
      expect(after).toEqual(before);
      const [again] = await db.sql`
        select count(*)::int as n from spectrum.raw_events
         where id = any (${bad}::uuid[]) and attempts = 1`;
      expect(again!.n).toBe(3);
      await counterIsExact(db.sql);
    },
  );

  it(
    're-queues exactly the ids given, whatever their status, ' + 'and counts only rows not pending',
    async () => {
      const ids = [good[0]!, bad[0]!];
      const [r] = await db.sql`select spectrum.reprocess(ids => ${ids}::uuid[]) as n`;
      expect(Number(r!.n)).toBe(2);
      expect(await statusOf(ids)).toEqual(['pending', 'pending']);
      const [again] = await db.sql`select spectrum.reprocess(ids => ${ids}::uuid[]) as n`;
      expect(Number(again!.n)).toBe(0);
      await counterIsExact(db.sql);
      await runPipeline(db.sql);
      await counterIsExact(db.sql);
    },
  );

  it(
    're-queues a received window: ' + 'received_after inclusive, received_before exclusive',
    async () => {
      const rows = await db.sql`
        insert into spectrum.raw_events (payload, received_at)
        select '{"event_type": "w"}', timestamptz '2026-01-01 00:00:00+00' + n * interval '1 hour'
          from generate_series(0, 3) n
        returning id, received_at`;
      await runPipeline(db.sql);
      expect(await statusOf(rows.map((r) => r.id))).toEqual(Array(4).fill('failed'));
      const [r] = await db.sql`
        select spectrum.reprocess(received_after => '2026-01-01 01:00:00+00',
                                  received_before => '2026-01-01 03:00:00+00') as n`;
      expect(Number(r!.n)).toBe(2);
      const pending = await db.sql`
        select received_at from spectrum.raw_events where status = 'pending' order by received_at`;
      expect(pending.map((p) => (p.received_at as Date).toISOString())).toEqual([
        '2026-01-01T01:00:00.000Z',
        '2026-01-01T02:00:00.000Z',
      ]);
      await runPipeline(db.sql);
    },
  );

  it('combines the filters with AND', async () => {
    const ids = [good[1]!, good[2]!, bad[1]!];
    const [r] = await db.sql`
      select spectrum.reprocess(status => 'done', ids => ${ids}::uuid[],
                                received_after => now() - interval '1 day',
                                received_before => now() + interval '1 day') as n`;
    expect(Number(r!.n)).toBe(2);
    expect(await statusOf(ids)).toEqual(['pending', 'pending', 'failed']);
    const [none] = await db.sql`
      select spectrum.reprocess(status => 'failed', received_before => '2000-01-01') as n`;
    expect(Number(none!.n)).toBe(0);
    await counterIsExact(db.sql);
    await runPipeline(db.sql);
    await counterIsExact(db.sql);
  });

  it('counts in a dry run what it would re-queue, and changes nothing', async () => {
    const rows = async () => db.sql`
      select id, status, attempts, error_msg, processed_at, xmin::text
        from spectrum.raw_events order by id`;
    const before = await rows();
    const totals = await db.sql`select * from spectrum.status_totals order by status`;
    const cases: [string, number][] = [
      [`status => 'failed'`, 3],
      [`status => 'done'`, 6],
      [`ids => array['${good[0]}', '${bad[0]}', '${good[1]}']::uuid[], status => 'done'`, 2],
      [`received_after => now() - interval '1 hour'`, 9],
      [`event_type => 'click'`, 8],
    ];
    for (const [filters, n] of cases) {
      const [r] = await db.sql.unsafe(
        `select spectrum.reprocess(${filters}, dry_run => true) as n`,
      );
      expect(Number(r!.n), filters).toBe(n);
    }
    expect(await rows()).toEqual(before);
    expect(await db.sql`select * from spectrum.status_totals order by status`).toEqual(totals);
    // The same filters without dry_run re-queue as many as counted.
    const [r] = await db.sql`select spectrum.reprocess(status => 'done') as n`;
    expect(Number(r!.n)).toBe(6);
    const [again] = await db.sql`select spectrum.reprocess(status => 'done', dry_run => true) as n`;
    expect(Number(again!.n)).toBe(0);
    const err = await db.sql`select spectrum.reprocess(dry_run => true)`.catch((e) => e);
    expect(err.code).toBe('22023');
    expect(err.hint).toBeTruthy();
  });

  it('filters on the payload: event_type, and account_id in any spelling of its uuid', async () => {
    const other = 'f0e1d2c3-b4a5-4697-8899-aabbccddeeff';
    const mine = await insertEvents(db.sql, [
      { event_type: 'purchase', account_id: ACCOUNT },
      { event_type: 'purchase', account_id: other.toUpperCase() },
      { event_type: 'click', account_id: `{${other.replaceAll('-', '')}}` },
      { event_type: 'purchase', account_id: 'abc' },
    ]);
    await runPipeline(db.sql);
    expect(await statusOf(mine)).toEqual(['done', 'done', 'done', 'failed']);

    const [byType] = await db.sql`select spectrum.reprocess(event_type => 'purchase') as n`;
    expect(Number(byType!.n)).toBe(3);
    expect(await statusOf(mine)).toEqual(['pending', 'pending', 'done', 'pending']);
    await runPipeline(db.sql);

    const [byAccount] = await db.sql`select spectrum.reprocess(account_id => ${other}) as n`;
    expect(Number(byAccount!.n)).toBe(2);
    expect(await statusOf(mine)).toEqual(['done', 'pending', 'pending', 'failed']);
    await runPipeline(db.sql);

    // Combined with each other and with the row's own columns.
    const [both] = await db.sql`
      select spectrum.reprocess(event_type => 'click', account_id => ${ACCOUNT},
                                status => 'done') as n`;
    expect(Number(both!.n)).toBe(6);
    expect(await statusOf(good)).toEqual(good.map(() => 'pending'));
    expect(await statusOf(bad)).toEqual(['failed', 'failed', 'failed']);
    const [none] = await db.sql`
      select spectrum.reprocess(event_type => 'purchase', account_id => ${ACCOUNT},
                                status => 'failed') as n`;
    expect(Number(none!.n)).toBe(0);
    await counterIsExact(db.sql);
    await runPipeline(db.sql);
    await counterIsExact(db.sql);
    const [facts] = await db.sql`
      select count(*)::int as n, count(distinct event_id)::int as events
        from spectrum.fact_events where raw_event_id = any (${[...good, ...mine]}::uuid[])`;
    expect(facts).toEqual({ n: 9, events: 9 });
  });

  it('re-queues rows left in processing', async () => {
    await db.sql`update spectrum.raw_events set status = 'processing' where id = ${good[3]!}`;
    await counterIsExact(db.sql);
    const [r] = await db.sql`select spectrum.reprocess(status => 'processing') as n`;
    expect(Number(r!.n)).toBe(1);
    expect(await statusOf([good[3]!])).toEqual(['pending']);
    await runPipeline(db.sql);
    expect(await statusOf([good[3]!])).toEqual(['done']);
    await counterIsExact(db.sql);
  });

  it('replaces the fact of a reprocessed event instead of adding one', async () => {
    const id = good[4]!;
    const [before] = await db.sql`
      select event_type, raw_event_id, received_at
        from spectrum.fact_events where event_id = ${id}`;
    expect(before!.event_type).toBe('click');
    // A bug fixed in interpretation is simulated by editing the stored payload.
    await db.sql`
      update spectrum.raw_events set payload = payload || '{"event_type": "tap"}' where id = ${id}`;
    await db.sql`select spectrum.reprocess(ids => array[${id}]::uuid[])`;
    await runPipeline(db.sql);
    const facts = await db.sql`
      select event_type, raw_event_id, received_at
        from spectrum.fact_events where event_id = ${id}`;
    expect(facts).toEqual([{ ...before, event_type: 'tap' }]);

    // A retry of the same event, received later, then the older version reprocessed: the
    // newest version keeps the one fact.
    const [retry] = await insertEvents(db.sql, [
      { event_id: id, event_type: 'retry', account_id: ACCOUNT },
    ]);
    await runPipeline(db.sql);
    await db.sql`select spectrum.reprocess(ids => array[${id}]::uuid[])`;
    await runPipeline(db.sql);
    const after = await db.sql`
      select event_type, raw_event_id from spectrum.fact_events where event_id = ${id}`;
    expect(after).toEqual([{ event_type: 'retry', raw_event_id: retry }]);
    const [dups] = await db.sql`
      select count(*)::int as n
        from (select event_id from spectrum.fact_events group by 1 having count(*) > 1) d`;
    expect(dups!.n).toBe(0);
  });

  it(
    'is callable by name by the operator role, ' + 'which cannot update raw_events itself',
    async () => {
      const o = operator.sql;
      try {
        const [r] = await o`select spectrum.reprocess(status => 'failed') as n`;
        expect(Number(r!.n)).toBeGreaterThan(0);
        // The counters' running sums cannot be seeded from the session.
        await o`set spectrum.done_delta = '1000'`;
        await o`set spectrum.failed_delta = '1000'`;
        await o`set spectrum.done_floor = 'ffffffff-ffff-ffff-ffff-ffffffffffff'`;
        const [one] = await o`select spectrum.reprocess(ids => array[${good[5]!}]::uuid[]) as n`;
        expect(Number(one!.n)).toBe(1);
        await counterIsExact(db.sql);
        const denied = await o`update spectrum.raw_events set status = 'pending'`.catch((e) => e);
        expect(denied.code).toBe('42501');
        await runPipeline(db.sql);
        await counterIsExact(db.sql);
      } finally {
        await o`reset all`;
      }
    },
  );

  it('is not callable by the producer role nor by PUBLIC', async () => {
    const reprocess =
      'spectrum.reprocess(text, uuid[], timestamptz, timestamptz, text, uuid, boolean)';
    const [p] = await db.sql`
      select has_function_privilege('spectrum_producer', ${reprocess}, 'execute') as ok`;
    expect(p!.ok).toBe(false);
    const [pub] =
      await db.sql`select has_function_privilege('public', ${reprocess}, 'execute') as ok`;
    expect(pub!.ok).toBe(false);
  });
});

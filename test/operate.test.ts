/*
 * Operating the pipeline from psql: reprocess, the done counter behind pipeline_status,
 * failure_reasons, health(), maintenance, and overlapping calls of process_pending.
 * Each describe starts from an empty raw_events (TRUNCATE, which also resets the counter).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../scripts/lib/db.ts';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';

const ACCOUNT = '8d4a8d2c-4b1e-4f7e-9c53-0a3a3c1d2e10';
const valid = (n: number, extra: object = {}) =>
  Array.from({ length: n }, (_, i) => ({
    event_type: 'click',
    account_id: ACCOUNT,
    user_id: `u${i % 5}`,
    ...extra,
  }));

let db: TestDb;
let operatorRole: string;
let operator: Sql;

beforeAll(async () => {
  db = await testDatabase('operate');
  operatorRole = `op_${db.name}`.slice(0, 60);
  await db.sql.unsafe(`create role ${operatorRole} login in role spectrum_operator`);
  operator = connect(db.url.replace('postgres@', `${operatorRole}@`), { max: 1 });
});
afterAll(async () => {
  await operator?.end();
  if (!db) return;
  await db.drop();
  const admin = connect(db.adminUrl, { max: 1 });
  await admin.unsafe(`drop role if exists ${operatorRole}`);
  await admin.end();
});

const fresh = () => db.sql`truncate spectrum.raw_events, spectrum.pipeline_runs`;

/** The done and failed counters, the view and the rows agree; returns the done count. */
async function counterIsExact(): Promise<number> {
  const [r] = await db.sql`
    select (select events from spectrum.status_totals where status = 'done')::int as counted,
           (select events from spectrum.pipeline_status where status = 'done')::int as shown,
           (select count(*) from spectrum.raw_events where status = 'done')::int as actual,
           (select events from spectrum.status_totals where status = 'failed')::int as failed_counted,
           (select events from spectrum.pipeline_status where status = 'failed')::int as failed_shown,
           (select count(*) from spectrum.raw_events where status = 'failed')::int as failed_actual`;
  expect(r!.counted).toBe(r!.actual);
  expect(r!.shown).toBe(r!.actual);
  expect(r!.failed_counted).toBe(r!.failed_actual);
  expect(r!.failed_shown).toBe(r!.failed_actual);
  return r!.actual as number;
}

/** pipeline_status shows what the seed's group-by query finds: counts and oldest received_at. */
async function statusIsExact(): Promise<void> {
  const shown =
    await db.sql`select status, events::int, oldest_received_at from spectrum.pipeline_status order by status`;
  const seed = await db.sql`
    select s.status, count(r.status)::int as events, min(r.received_at) as oldest_received_at
      from unnest(array['done', 'failed', 'pending', 'processing']) s(status)
      left join spectrum.raw_events r on r.status = s.status
     group by 1 order by 1`;
  expect(shown).toEqual(seed);
}

const statusOf = async (ids: string[]) =>
  (
    await db.sql`select status from spectrum.raw_events where id = any (${ids}::uuid[]) order by id`
  ).map((r) => r.status as string);

describe('spectrum.reprocess', () => {
  let good: string[];
  let bad: string[];
  beforeAll(async () => {
    await fresh();
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
    const err =
      await db.sql`select spectrum.reprocess(received_after => now(), received_before => now() - interval '1 hour')`.catch(
        (e) => e,
      );
    expect(err.code).toBe('22023');
  });

  it('re-queues failed rows by status and returns how many; unchanged, they fail again the same way', async () => {
    const before =
      await db.sql`select id, error_msg from spectrum.raw_events where status = 'failed' order by id`;
    expect(before).toHaveLength(3);
    const [r] = await db.sql`select spectrum.reprocess(status => 'failed') as n`;
    expect(Number(r!.n)).toBe(3);
    const reset =
      await db.sql`select status, attempts, error_msg, processed_at from spectrum.raw_events where id = any (${bad}::uuid[])`;
    for (const row of reset)
      expect(row).toEqual({ status: 'pending', attempts: 0, error_msg: null, processed_at: null });
    expect(await statusOf(good)).toEqual(good.map(() => 'done'));

    await runPipeline(db.sql);
    const after =
      await db.sql`select id, error_msg from spectrum.raw_events where status = 'failed' order by id`;
    expect(after).toEqual(before);
    const [again] =
      await db.sql`select count(*)::int as n from spectrum.raw_events where id = any (${bad}::uuid[]) and attempts = 1`;
    expect(again!.n).toBe(3);
    await counterIsExact();
  });

  it('re-queues exactly the ids given, whatever their status, and counts only rows not pending', async () => {
    const [r] = await db.sql`select spectrum.reprocess(ids => ${[good[0]!, bad[0]!]}::uuid[]) as n`;
    expect(Number(r!.n)).toBe(2);
    expect(await statusOf([good[0]!, bad[0]!])).toEqual(['pending', 'pending']);
    const [again] =
      await db.sql`select spectrum.reprocess(ids => ${[good[0]!, bad[0]!]}::uuid[]) as n`;
    expect(Number(again!.n)).toBe(0);
    await counterIsExact();
    await runPipeline(db.sql);
    await counterIsExact();
  });

  it('re-queues a received window: received_after inclusive, received_before exclusive', async () => {
    const rows = await db.sql`
      insert into spectrum.raw_events (payload, received_at)
      select '{"event_type": "w"}', timestamptz '2026-01-01 00:00:00+00' + n * interval '1 hour'
        from generate_series(0, 3) n
      returning id, received_at`;
    await runPipeline(db.sql);
    expect(await statusOf(rows.map((r) => r.id))).toEqual(['failed', 'failed', 'failed', 'failed']);
    const [r] = await db.sql`
      select spectrum.reprocess(received_after => '2026-01-01 01:00:00+00', received_before => '2026-01-01 03:00:00+00') as n`;
    expect(Number(r!.n)).toBe(2);
    const pending =
      await db.sql`select received_at from spectrum.raw_events where status = 'pending' order by received_at`;
    expect(pending.map((p) => (p.received_at as Date).toISOString())).toEqual([
      '2026-01-01T01:00:00.000Z',
      '2026-01-01T02:00:00.000Z',
    ]);
    await runPipeline(db.sql);
  });

  it('combines the filters with AND', async () => {
    const [r] = await db.sql`
      select spectrum.reprocess(status => 'done', ids => ${[good[1]!, good[2]!, bad[1]!]}::uuid[],
                                received_after => now() - interval '1 day', received_before => now() + interval '1 day') as n`;
    expect(Number(r!.n)).toBe(2);
    expect(await statusOf([good[1]!, good[2]!, bad[1]!])).toEqual(['pending', 'pending', 'failed']);
    const [none] =
      await db.sql`select spectrum.reprocess(status => 'failed', received_before => '2000-01-01') as n`;
    expect(Number(none!.n)).toBe(0);
    await counterIsExact();
    await runPipeline(db.sql);
    await counterIsExact();
  });

  it('re-queues rows left in processing', async () => {
    await db.sql`update spectrum.raw_events set status = 'processing' where id = ${good[3]!}`;
    await counterIsExact();
    const [r] = await db.sql`select spectrum.reprocess(status => 'processing') as n`;
    expect(Number(r!.n)).toBe(1);
    expect(await statusOf([good[3]!])).toEqual(['pending']);
    await runPipeline(db.sql);
    expect(await statusOf([good[3]!])).toEqual(['done']);
    await counterIsExact();
  });

  it('replaces the fact of a reprocessed event instead of adding one', async () => {
    const id = good[4]!;
    const [before] =
      await db.sql`select event_type, raw_event_id, received_at from spectrum.fact_events where event_id = ${id}`;
    expect(before!.event_type).toBe('click');
    // A bug fixed in interpretation is simulated by editing the stored payload.
    await db.sql`update spectrum.raw_events set payload = payload || '{"event_type": "tap"}' where id = ${id}`;
    await db.sql`select spectrum.reprocess(ids => array[${id}]::uuid[])`;
    await runPipeline(db.sql);
    const facts =
      await db.sql`select event_type, raw_event_id, received_at from spectrum.fact_events where event_id = ${id}`;
    expect(facts).toEqual([{ ...before, event_type: 'tap' }]);

    // A retry of the same event, received later, then the older version reprocessed: the
    // newest version keeps the one fact.
    const [retry] = await insertEvents(db.sql, [
      { event_id: id, event_type: 'retry', account_id: ACCOUNT },
    ]);
    await runPipeline(db.sql);
    await db.sql`select spectrum.reprocess(ids => array[${id}]::uuid[])`;
    await runPipeline(db.sql);
    const after =
      await db.sql`select event_type, raw_event_id from spectrum.fact_events where event_id = ${id}`;
    expect(after).toEqual([{ event_type: 'retry', raw_event_id: retry }]);
    const [dups] =
      await db.sql`select count(*)::int as n from (select event_id from spectrum.fact_events group by 1 having count(*) > 1) d`;
    expect(dups!.n).toBe(0);
  });

  it('is callable by name by the operator role, which cannot update raw_events itself', async () => {
    const [r] = await operator`select spectrum.reprocess(status => 'failed') as n`;
    expect(Number(r!.n)).toBeGreaterThan(0);
    // The counters' running sums cannot be seeded from the session.
    await operator`set spectrum.done_delta = '1000'`;
    await operator`set spectrum.failed_delta = '1000'`;
    await operator`set spectrum.done_floor = 'ffffffff-ffff-ffff-ffff-ffffffffffff'`;
    const [one] = await operator`select spectrum.reprocess(ids => array[${good[5]!}]::uuid[]) as n`;
    expect(Number(one!.n)).toBe(1);
    await counterIsExact();
    const denied = await operator`update spectrum.raw_events set status = 'pending'`.catch(
      (e) => e,
    );
    expect(denied.code).toBe('42501');
    await runPipeline(db.sql);
    await counterIsExact();
  });

  it('is not callable by the producer role nor by PUBLIC', async () => {
    const [p] =
      await db.sql`select has_function_privilege('spectrum_producer', 'spectrum.reprocess(text, uuid[], timestamptz, timestamptz)', 'execute') as ok`;
    expect(p!.ok).toBe(false);
    const [pub] =
      await db.sql`select has_function_privilege('public', 'spectrum.reprocess(text, uuid[], timestamptz, timestamptz)', 'execute') as ok`;
    expect(pub!.ok).toBe(false);
  });
});

describe('the done and failed counters behind pipeline_status', () => {
  beforeAll(async () => {
    await fresh();
    await insertEvents(db.sql, [...valid(40), { account_id: 'x' }, { account_id: 'y' }]);
    await runPipeline(db.sql, 'p_batch_size => 7');
  });

  it('counts what the pipeline marks done and failed', async () => {
    expect(await counterIsExact()).toBe(40);
    const [failed] =
      await db.sql`select events::int from spectrum.status_totals where status = 'failed'`;
    expect(failed!.events).toBe(2);
  });

  it('follows a manual DELETE of done and of failed rows', async () => {
    await db.sql`delete from spectrum.raw_events where id in (select id from spectrum.raw_events where status = 'done' order by id limit 3)`;
    await db.sql`delete from spectrum.raw_events where id in (select id from spectrum.raw_events where status = 'failed' limit 1)`;
    expect(await counterIsExact()).toBe(37);
  });

  it('follows a manual UPDATE out of done, and back into done from failed', async () => {
    await db.sql`update spectrum.raw_events set status = 'failed' where id in (select id from spectrum.raw_events where status = 'done' order by id limit 5)`;
    expect(await counterIsExact()).toBe(32);
    await db.sql`update spectrum.raw_events set status = 'done' where status = 'failed'`;
    expect(await counterIsExact()).toBe(38);
    await db.sql`update spectrum.raw_events set error_msg = null where status = 'done'`;
    expect(await counterIsExact()).toBe(38);
  });

  it('is repaired by recount_status after changes it cannot see (pending set done or failed by hand)', async () => {
    const [one, two, three] = await insertEvents(db.sql, valid(3));
    await db.sql`update spectrum.raw_events set status = 'done' where id in (${one!}, ${two!})`;
    await db.sql`update spectrum.raw_events set status = 'failed' where id = ${three!}`;
    const drift =
      await db.sql`select status, events::int from spectrum.status_totals order by status`;
    expect(drift.map((d) => d.events)).toEqual([38, 0]);
    const [r] = await db.sql`select spectrum.recount_status() as n`;
    expect(Number(r!.n)).toBe(40);
    expect(await counterIsExact()).toBe(40);
    await statusIsExact();
  });

  it('goes to 0 on TRUNCATE', async () => {
    await db.sql`truncate spectrum.raw_events`;
    expect(await counterIsExact()).toBe(0);
    const totals = await db.sql`select events::int from spectrum.status_totals`;
    expect(totals.map((t) => t.events)).toEqual([0, 0]);
  });

  it("costs the pipeline's pending -> done or failed update no trigger call per row", async () => {
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
      `update spectrum.raw_events set status = case when random() < 0.5 then 'done' else 'failed' end,
              processed_at = now(), attempts = attempts + 1 where status = 'pending'`,
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
      `update spectrum.raw_events set status = 'failed' where status = 'done'`,
    );
    expect(manual.raw_events_status_changed).toBe(50);
    expect(await counterIsExact()).toBe(50);
  });
});

describe('spectrum.pipeline_status', () => {
  beforeAll(fresh);
  const bad = (n: number) =>
    Array.from({ length: n }, () => ({ event_type: 'click', account_id: 'nope' }));
  const set = (status: string, ids: string[]) =>
    db.sql`update spectrum.raw_events set status = ${status} where id = any (${ids}::uuid[])`;
  const keepRows = () => db.sql`call spectrum.maintenance(p_retention => '10 years')`;

  it("shows what the seed's group-by query finds after pipeline, reprocess, manual updates, deletes and truncate", async () => {
    await statusIsExact();
    // Oldest first: the failures, then the good events, each insert at its own received_at.
    const early = await insertEvents(db.sql, bad(4));
    const good = await insertEvents(db.sql, valid(30));
    await insertEvents(db.sql, [...valid(5), ...bad(3)]);
    await statusIsExact();
    await runPipeline(db.sql, 'p_batch_size => 8');
    await statusIsExact();
    await keepRows(); // the done floor goes up to good[0], past the early failures
    await statusIsExact();

    // An early failure fixed and reprocessed: the batch makes done a row below the floor.
    await db.sql`update spectrum.raw_events set payload = payload || ${db.sql.json({ account_id: ACCOUNT })} where id = ${early[0]!}`;
    await db.sql`select spectrum.reprocess(ids => array[${early[0]!}]::uuid[])`;
    await statusIsExact();
    await runPipeline(db.sql);
    await statusIsExact();
    await keepRows();

    // By hand: done -> failed, failed -> done (below the floor), done -> processing -> pending
    // (the next run) -> done, processing -> failed.
    await set('failed', [early[0]!, good[0]!]);
    await statusIsExact();
    await keepRows(); // the floor up to good[1]
    await set('done', [early[1]!]);
    await statusIsExact();
    await set('processing', good.slice(1, 4));
    await statusIsExact();
    await set('failed', [good[3]!]);
    await statusIsExact();
    await runPipeline(db.sql);
    await statusIsExact();

    // Reprocess by status, with failures from unexpected errors among them.
    await db.sql`create function public.status_boom() returns trigger language plpgsql as $$
      begin
        if new.event_type = 'boom' then raise exception 'kaboom' using errcode = 'XX125'; end if;
        return new;
      end $$`;
    await db.sql`create trigger boom before insert on spectrum.fact_events for each row execute function public.status_boom()`;
    try {
      await insertEvents(db.sql, [{ event_type: 'boom', account_id: ACCOUNT }, ...valid(2)]);
      await db.sql`select spectrum.reprocess(status => 'done', ids => ${good.slice(10, 15)}::uuid[])`;
      await db.sql`select spectrum.reprocess(status => 'failed')`;
      await statusIsExact();
      await db.sql.unsafe('call spectrum.process_pending(p_max_attempts => 1)');
      await statusIsExact();
    } finally {
      await db.sql`drop trigger boom on spectrum.fact_events`;
      await db.sql`drop function public.status_boom()`;
    }

    // Several statements in one transaction, then deletes of both kinds.
    await db.sql.begin(async (tx) => {
      await tx`update spectrum.raw_events set status = 'failed' where id = any (${good.slice(20, 23)}::uuid[])`;
      await tx`delete from spectrum.raw_events where id = ${good[20]!}`;
      await tx`update spectrum.raw_events set status = 'done' where id = ${good[21]!}`;
    });
    await statusIsExact();
    await db.sql`delete from spectrum.raw_events where id = any (${[...early, ...good.slice(5, 10)]}::uuid[])`;
    await statusIsExact();
    await keepRows();
    await statusIsExact();

    await db.sql`truncate spectrum.raw_events`;
    await statusIsExact();
    await insertEvents(db.sql, [...valid(3), ...bad(2)]);
    await runPipeline(db.sql);
    await statusIsExact();
  });

  it('reads neither the done rows nor the failed rows: one row of each at most', async () => {
    await fresh();
    // 50,000 old failures (the lowest ids, as retention leaves them), then done rows, then a
    // small backlog.
    await db.sql`
      insert into spectrum.raw_events (id, payload, received_at, status, processed_at, error_msg, attempts)
      select spectrum.uuid_v7(t), '{"event_type": "old"}', t,
             case when g <= 50000 then 'failed' when g <= 60000 then 'done' else 'pending' end,
             case when g <= 60000 then t end, case when g <= 50000 then 'account_id: missing' end,
             case when g <= 60000 then 1 else 0 end
        from generate_series(1, 60010) g, lateral (select now() - interval '30 days' + g * interval '1 second' as t) s`;
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
    await statusIsExact();
    expect(await rowsRead()).toBe(12);
    await db.sql`update spectrum.status_totals set id_floor = '00000000-0000-0000-0000-000000000000'`;
    await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
    expect(await rowsRead()).toBe(12);
    await statusIsExact();
  });
});

describe('spectrum.failure_reasons', () => {
  beforeAll(async () => {
    await fresh();
    await insertEvents(db.sql, [
      ...valid(3),
      { event_type: 'click', account_id: 'abc' },
      { event_type: 'click', account_id: 'a; b' },
      { event_type: 'click', account_id: 12 },
      { account_id: ACCOUNT },
      { account_id: ACCOUNT, user_id: 'x'.repeat(201) },
      { event_type: 'click', account_id: 'zzz', user_id: { no: 1 } },
    ]);
    await runPipeline(db.sql);
  });

  it('groups failed rows by field and problem, without the values, most frequent first', async () => {
    const rows = await db.sql`select field, problem, events::int from spectrum.failure_reasons`;
    expect(rows).toEqual([
      { field: 'account_id', problem: 'is not a uuid', events: 4 },
      { field: 'event_type', problem: 'missing', events: 2 },
      { field: 'user_id', problem: 'is not a string or number', events: 1 },
      {
        field: 'user_id',
        problem: 'text of N characters exceeds limits.maxTextLength (200)',
        events: 1,
      },
    ]);
  });

  it('shows the latest example: a failed raw id with that error', async () => {
    const rows = await db.sql`
      select r.field, r.example_error, e.status, e.error_msg, r.last_failed_at = e.processed_at as latest
        from spectrum.failure_reasons r join spectrum.raw_events e on e.id = r.example_raw_id`;
    expect(rows).toHaveLength(4);
    for (const r of rows) {
      expect(r.status).toBe('failed');
      expect(r.error_msg).toContain(r.example_error);
      expect(r.example_error.startsWith(`${r.field}: `)).toBe(true);
      expect(r.latest).toBe(true);
    }
  });

  it('is readable by the operator role', async () => {
    const rows = await operator`select * from spectrum.failure_reasons`;
    expect(rows).toHaveLength(4);
  });
});

describe('spectrum.health()', () => {
  const health = async () => (await db.sql`select * from spectrum.health()`)[0]!;
  beforeAll(async () => {
    await fresh();
    await insertEvents(db.sql, valid(20));
    await runPipeline(db.sql);
  });

  it('is ok after a clean run', async () => {
    const h = await health();
    expect(h.ok).toBe(true);
    expect(h.problems).toEqual([]);
    expect(Number(h.backlog)).toBe(0);
    expect(h.backlog_stale).toBe(false);
    expect(h.last_run_finished).toBe(true);
    expect(h.last_success_at).toEqual(h.last_run_finished_at);
    expect(Number(h.processed_last_hour)).toBe(20);
    expect(Number(h.failure_rate)).toBe(0);
  });

  it('flags a backlog older than two ticks', async () => {
    await db.sql`insert into spectrum.raw_events (payload, received_at) values ('{}', now() - interval '3 minutes'), ('{}', now() - interval '25 minutes')`;
    const h = await health();
    expect(Number(h.backlog)).toBe(2);
    expect(h.backlog_stale).toBe(true);
    expect(h.ok).toBe(false);
    expect(h.problems).toHaveLength(1);
    const [age] =
      await db.sql`select ${h.oldest_pending_age}::interval >= interval '25 minutes' as ok`;
    expect(age!.ok).toBe(true);
    const [lenient] = await db.sql`select ok from spectrum.health(p_stale_after => '1 hour')`;
    expect(lenient!.ok).toBe(true);
  });

  it('flags a failure rate above the threshold', async () => {
    await runPipeline(db.sql); // the two '{}' rows fail: 2 of 22 in the last hour
    const h = await health();
    expect(h.backlog_stale).toBe(false);
    expect(Number(h.failed_last_hour)).toBe(2);
    expect(Number(h.failure_rate)).toBeCloseTo(2 / 22, 4);
    expect(h.ok).toBe(false);
    expect(h.problems).toHaveLength(1);
    const [lenient] = await db.sql`select ok from spectrum.health(p_max_failure_rate => 0.2)`;
    expect(lenient!.ok).toBe(true);
  });

  it('flags a last run that never finished, but not one still within its time', async () => {
    await db.sql`update spectrum.pipeline_runs set started_at = started_at - interval '1 hour', finished_at = finished_at - interval '1 hour'`;
    await db.sql`insert into spectrum.pipeline_runs (started_at) values (now() - interval '1 minute')`;
    const running = (await db.sql`select * from spectrum.health(p_max_failure_rate => 1)`)[0]!;
    expect(running.last_run_finished).toBe(false);
    expect(running.ok).toBe(true);
    await db.sql`update spectrum.pipeline_runs set started_at = now() - interval '30 minutes' where finished_at is null`;
    const died = (await db.sql`select * from spectrum.health(p_max_failure_rate => 1)`)[0]!;
    expect(died.last_run_finished).toBe(false);
    expect(died.ok).toBe(false);
    expect(died.problems).toHaveLength(1);
    expect(died.last_success_at).not.toBeNull();
  });

  it('is callable by the operator role', async () => {
    const [h] = await operator`select ok, problems from spectrum.health()`;
    expect(h!.ok).toBe(false);
  });
});

describe('CALL spectrum.maintenance()', () => {
  const months = (n: number) =>
    db.sql`select spectrum.missing_fact_partitions(array(
             select (date_trunc('month', now() at time zone 'UTC') + make_interval(months => m)) at time zone 'UTC'
               from generate_series(0, ${n}::int) m)) as missing`;
  const lastRun = async () =>
    (await db.sql`select * from spectrum.maintenance_runs order by run_id desc limit 1`)[0];
  let old: { done: string[]; failed: string[]; pending: string[]; recent: string[] };

  beforeAll(async () => {
    await fresh();
    const insert = (status: string, ago: string, n: number) =>
      db.sql`
        insert into spectrum.raw_events (id, payload, received_at, status, processed_at, error_msg, attempts)
        select spectrum.uuid_v7(t), '{"event_type": "old"}', t, ${status},
               case when ${status} <> 'pending' then t end, case when ${status} = 'failed' then 'account_id: missing' end,
               case when ${status} <> 'pending' then 1 else 0 end
          from (select now() - ${ago}::interval + g * interval '1 second' as t from generate_series(1, ${n}::int) g) s
        returning id`.then((rows) => rows.map((r) => r.id as string));
    old = {
      done: await insert('done', '100 days', 25),
      failed: await insert('failed', '100 days', 4),
      pending: await insert('pending', '95 days', 2),
      recent: await insert('done', '10 days', 5),
    };
    await db.sql`select spectrum.recount_status()`;
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
    await counterIsExact();
  });

  it('deletes only done rows older than the retention, in chunks, keeping failed and pending rows', async () => {
    await db.sql`call spectrum.maintenance(p_batch_size => 7)`;
    expect(Number((await lastRun())!.raw_deleted)).toBe(1);
    const [r] = await db.sql`
      select count(*) filter (where id = any (${old.done}::uuid[]))::int as done,
             count(*) filter (where id = any (${old.failed}::uuid[]))::int as failed,
             count(*) filter (where id = any (${old.pending}::uuid[]))::int as pending,
             count(*) filter (where id = any (${old.recent}::uuid[]))::int as recent
        from spectrum.raw_events`;
    expect(r).toEqual({ done: 0, failed: 4, pending: 2, recent: 5 });
    expect(await counterIsExact()).toBe(5);
    await db.sql`call spectrum.maintenance(p_retention => '5 days')`;
    expect(Number((await lastRun())!.raw_deleted)).toBe(5);
    expect(await counterIsExact()).toBe(0);
  });

  it('deletes old done rows whose ids are not time-ordered (gen_random_uuid), keeping failed ones', async () => {
    await db.sql`
      insert into spectrum.raw_events (id, payload, received_at, status, processed_at, error_msg, attempts)
      select gen_random_uuid(), '{"event_type": "imported"}', now() - interval '200 days',
             case when g <= 1000 then 'done' else 'failed' end, now() - interval '200 days',
             case when g > 1000 then 'account_id: missing' end, 1
        from generate_series(1, 1100) g`;
    await db.sql`select spectrum.recount_status()`;
    // The only ones retention cannot find: random ids between the two id ranges it searches.
    const imported = (status: string) =>
      db.sql`select id from spectrum.raw_events where payload->>'event_type' = 'imported' and status = ${status} order by id`.then(
        (rows) => rows.map((r) => r.id as string),
      );
    const [gap] = await db.sql`
      select coalesce(array_agg(id order by id), '{}') as ids from spectrum.raw_events
       where payload->>'event_type' = 'imported' and status = 'done'
         and id > spectrum.uuid_v7(now() - interval '90 days') and id < spectrum.uuid_v7(now() + interval '1 day')`;
    const failed = await imported('failed');
    expect(failed).toHaveLength(100);

    await db.sql`call spectrum.maintenance(p_batch_size => 300)`;
    expect(Number((await lastRun())!.raw_deleted)).toBe(1000 - gap!.ids.length);
    expect(await imported('done')).toEqual(gap!.ids);
    expect(await imported('failed')).toEqual(failed);
    await counterIsExact();
    await db.sql`delete from spectrum.raw_events where payload->>'event_type' = 'imported'`;
  });

  it('leaves cron.job_run_details alone, with a NOTICE, when pg_cron lives in another database', async () => {
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
  });

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

  it('holds no lock after a run that raised: the next call, in that session or another, runs', async () => {
    const holder = await db.sql.reserve();
    const s = await db.sql.reserve();
    const advisoryLocks = async () =>
      (
        await db.sql`select count(*)::int as n from pg_locks where locktype = 'advisory' and database = (select oid from pg_database where datname = current_database())`
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
    const err = await operator`call spectrum.maintenance()`.catch((e) => e);
    expect(err.code).toBe('42501');
    const runs = await operator`select * from spectrum.maintenance_runs`;
    expect(runs.length).toBeGreaterThan(0);
  });
});

describe('a fact partition while a batch holds an uncommitted dimension upsert', () => {
  // Attaching a partition clones its foreign keys: SHARE ROW EXCLUSIVE on every dimension.
  let holder: Awaited<ReturnType<Sql['reserve']>>;
  let holding = false;
  let month: Date;
  const partition = () => `fact_events_${month.toISOString().slice(0, 7).replace('-', '_')}`;
  const exists = async () =>
    (await db.sql`select to_regclass(${`spectrum.${partition()}`}) is not null as ok`)[0]!
      .ok as boolean;

  beforeAll(async () => {
    await fresh();
    [{ month }] =
      (await db.sql`select date_trunc('month', now() at time zone 'UTC' - interval '4 years') at time zone 'UTC' as month`) as unknown as [
        { month: Date },
      ];
    holder = await db.sql.reserve();
    await holder`begin`;
    await holder`insert into spectrum.dim_accounts (account_id, first_seen_at, last_seen_at) values (gen_random_uuid(), now(), now())`;
    holding = true;
  });
  afterAll(async () => {
    if (holding) await holder`rollback`;
    holder?.release();
  });

  it('ensure_fact_partitions gives up with 55P03 after its 5 s lock timeout, creating nothing', async () => {
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
  });

  it('process_pending stops with contention and leaves the batch pending for the next tick', async () => {
    const at = new Date(month.getTime() + 14 * 86400_000).toISOString();
    const ids = await insertEvents(db.sql, [
      { event_type: 'late', account_id: ACCOUNT, timestamp: at },
      ...valid(3),
    ]);
    await runPipeline(db.sql);
    const [run] =
      await db.sql`select stopped_because, batches::int from spectrum.pipeline_runs order by run_id desc limit 1`;
    expect(run).toEqual({ stopped_because: 'contention', batches: 0 });
    const rows =
      await db.sql`select status, attempts from spectrum.raw_events where id = any (${ids}::uuid[])`;
    expect(rows).toEqual(ids.map(() => ({ status: 'pending', attempts: 0 })));
    expect(await exists()).toBe(false);
  });

  it('maintenance notes the timeout and goes on with retention', async () => {
    await db.sql`
      insert into spectrum.raw_events (id, payload, received_at, status, processed_at, attempts)
      select spectrum.uuid_v7(t), '{"event_type": "old"}', t, 'done', t, 1 from (select now() - interval '200 days' as t) s`;
    await db.sql`select spectrum.recount_status()`;
    await db.sql`call spectrum.maintenance(p_months_ahead => 11)`;
    const [run] =
      await db.sql`select partitions_created, raw_deleted::int, finished_at, note from spectrum.maintenance_runs order by run_id desc limit 1`;
    expect(run!.partitions_created).toBe(0);
    expect(run!.raw_deleted).toBe(1);
    expect(run!.finished_at).not.toBeNull();
    expect(run!.note).toMatch(/fact partitions not created/);
  });

  it('once the upsert commits, the next tick creates the partition, with its comment, and does the batch', async () => {
    await holder`rollback`;
    holding = false;
    await runPipeline(db.sql);
    const [run] =
      await db.sql`select stopped_because, done::int from spectrum.pipeline_runs order by run_id desc limit 1`;
    expect(run).toEqual({ stopped_because: 'no pending rows', done: 4 });
    const [p] =
      await db.sql`select obj_description(${`spectrum.${partition()}`}::regclass, 'pg_class') as comment`;
    expect(p!.comment).toBeTruthy();
    await db.sql`call spectrum.maintenance(p_months_ahead => 11)`;
    const [m] =
      await db.sql`select partitions_created, note from spectrum.maintenance_runs order by run_id desc limit 1`;
    expect(m!.partitions_created).toBeGreaterThan(0);
    const [none] = await db.sql`
      select count(*)::int as n from pg_inherits i join pg_class c on c.oid = i.inhrelid
       where i.inhparent = 'spectrum.fact_events'::regclass and obj_description(c.oid, 'pg_class') is null`;
    expect(none!.n).toBe(0);
  });
});

describe('overlapping calls of process_pending', () => {
  beforeAll(fresh);

  it('never process a row twice: every row once, one fact per event, the counter exact', async () => {
    const payloads = [
      ...valid(3000),
      ...Array.from({ length: 30 }, () => ({ event_type: 'bad', account_id: 'nope' })),
    ];
    for (let i = 0; i < payloads.length; i += 1000)
      await insertEvents(db.sql, payloads.slice(i, i + 1000));
    const call = async () => {
      const s = await db.sql.reserve();
      try {
        await s`call spectrum.process_pending(p_batch_size => 150)`;
      } finally {
        s.release();
      }
    };
    await Promise.all([call(), call()]);
    const [r] = await db.sql`
      select count(*) filter (where status = 'done')::int as done,
             count(*) filter (where status = 'failed')::int as failed,
             count(*) filter (where attempts <> 1)::int as not_once
        from spectrum.raw_events`;
    expect(r).toEqual({ done: 3000, failed: 30, not_once: 0 });
    const [f] = await db.sql`
      select count(*)::int as facts, count(distinct f.event_id)::int as events
        from spectrum.fact_events f join spectrum.raw_events e on e.id = f.raw_event_id`;
    expect(f).toEqual({ facts: 3000, events: 3000 });
    const runs = await db.sql`select claimed::int, finished_at from spectrum.pipeline_runs`;
    expect(runs).toHaveLength(2);
    expect(runs.reduce((n, x) => n + x.claimed, 0)).toBe(3030);
    expect(await counterIsExact()).toBe(3000);
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

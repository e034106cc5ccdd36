/*
 * CALL spectrum.reprocess_in_chunks, as an operator runs it from psql: a NOTICE per committed
 * chunk, a dry run, a cancel and a resume that reset every row exactly once, the wait for
 * batches older than the run, pipeline ticks running meanwhile (facts exactly once, counters
 * exact), and who may call it. Each test loads its own events.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../scripts/lib/db.ts';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import {
  counterIsExact,
  fresh,
  loginRole,
  statusIsExact,
  valid,
  type Login,
} from './helpers/fixtures.ts';

let db: TestDb;
let operator: Login;
let producer: Login;
beforeAll(async () => {
  db = await testDatabase('reprocess_chunks');
  operator = await loginRole(db, 'op', 'spectrum_operator');
  producer = await loginRole(db, 'prod', 'spectrum_producer');
});
afterAll(async () => {
  await operator?.drop();
  await producer?.drop();
  await db?.drop();
});

/** A connection of its own that keeps the NOTICEs it receives. */
async function session(): Promise<{ sql: Sql; notices: string[]; pid: number }> {
  const notices: string[] = [];
  const sql = connect(db.url, { max: 1, onnotice: (n) => notices.push(n.message ?? '') });
  const [p] = await sql`select pg_backend_pid() as pid`;
  return { sql, notices, pid: p!.pid as number };
}

const until = async (what: string, check: () => boolean | Promise<boolean>) => {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

const progressOf = async (runId: string) => {
  const [r] = await db.sql`select * from spectrum.reprocess_progress where run_id = ${runId}`;
  return r!;
};

/** Loads n valid events, processes them, and returns their raw ids in id order. */
async function doneEvents(n: number, extra: object = {}): Promise<string[]> {
  const ids = await insertEvents(db.sql, valid(n, extra));
  await runPipeline(db.sql);
  return ids.sort();
}

const statuses = async (ids: string[]) =>
  (
    await db.sql`
      select status from spectrum.raw_events where id = any (${ids}::uuid[]) order by id`
  ).map((r) => r.status as string);

const factsExactlyOnce = async () => {
  const [f] = await db.sql`
    select count(*)::int as facts, count(distinct event_id)::int as events,
           (select count(distinct coalesce((payload ->> 'event_id')::uuid, id))::int
              from spectrum.raw_events where status = 'done') as done_events
      from spectrum.fact_events`;
  expect(f!.facts).toBe(f!.events);
  expect(f!.facts).toBe(f!.done_events);
};

describe('CALL spectrum.reprocess_in_chunks', () => {
  beforeEach(async () => {
    await fresh(db.sql);
    await db.sql`truncate spectrum.fact_events, spectrum.event_registry, spectrum.reprocess_runs`;
  });

  it('re-queues 1,000 rows in 10 committed chunks of 100, a NOTICE each', async () => {
    const ids = await doneEvents(1000);
    const s = await session();
    try {
      const [r] = await s.sql`
        call spectrum.reprocess_in_chunks(status => 'done', chunk_size => 100)`;
      const lines = s.notices.filter((m) => / chunk \d+: /.test(m));
      expect(lines).toHaveLength(10);
      expect(lines.map((m) => Number(/: (\d+) of 1000 rows re-queued/.exec(m)?.[1]))).toEqual(
        Array.from({ length: 10 }, (_, i) => (i + 1) * 100),
      );
      for (const m of lines) expect(m).toMatch(/\d+ rows\/s/);
      expect(lines.at(-1)).toMatch(/finished$/);
      // One transaction per chunk: the rows carry ten different xmins.
      const [x] = await db.sql`
        select count(distinct xmin::text)::int as n
          from spectrum.raw_events where id = any (${ids}::uuid[])`;
      expect(x!.n).toBe(10);
      expect(await statuses(ids)).toEqual(ids.map(() => 'pending'));
      expect(await progressOf(r!.run_id)).toMatchObject({
        state: 'finished',
        requeued: '1000',
        matched: '1000',
        chunks: 10,
      });
      await counterIsExact(db.sql);
      await runPipeline(db.sql);
      expect(await statuses(ids)).toEqual(ids.map(() => 'done'));
      await factsExactlyOnce();
      await counterIsExact(db.sql);
    } finally {
      await s.sql.end();
    }
  });

  it('counts in a dry run, records no run and changes nothing', async () => {
    const ids = await doneEvents(300);
    await db.sql`select spectrum.reprocess(ids => ${ids.slice(0, 20)}::uuid[])`;
    const before = await db.sql`select id, status, xmin::text from spectrum.raw_events order by id`;
    const s = await session();
    try {
      const [r] = await s.sql`
        call spectrum.reprocess_in_chunks(event_type => 'click', chunk_size => 100,
                                          dry_run => true)`;
      expect(r!.run_id).toBeNull();
      expect(s.notices).toEqual([
        'spectrum.reprocess_in_chunks: dry run: 280 rows match (3 chunks of 100); nothing changed',
      ]);
      expect(
        await db.sql`select id, status, xmin::text from spectrum.raw_events order by id`,
      ).toEqual(before);
      const [n] = await db.sql`select count(*)::int as n from spectrum.reprocess_runs`;
      expect(n!.n).toBe(0);
    } finally {
      await s.sql.end();
    }
  });

  it('takes the payload filters, combined, and re-queues only what matches', async () => {
    const other = 'f0e1d2c3-b4a5-4697-8899-aabbccddeeff';
    const clicks = await doneEvents(30);
    const theirs = await doneEvents(20, { account_id: other.toUpperCase() });
    const purchases = await doneEvents(10, { event_type: 'purchase', account_id: other });
    const [r] = await db.sql`
      call spectrum.reprocess_in_chunks(event_type => 'click', account_id => ${other},
                                        chunk_size => 7)`;
    expect(await progressOf(r!.run_id)).toMatchObject({
      state: 'finished',
      requeued: '20',
      matched: '20',
      chunks: 3,
      filters: `event_type => 'click', account_id => '${other}'`,
    });
    expect(await statuses(theirs)).toEqual(theirs.map(() => 'pending'));
    expect(new Set(await statuses([...clicks, ...purchases]))).toEqual(new Set(['done']));
    await runPipeline(db.sql);
    await factsExactlyOnce();
    await counterIsExact(db.sql);
  });

  it(
    'cancelled mid-run, resumes after the last committed chunk: ' +
      'every row reset exactly once, facts exactly once',
    async () => {
      const ids = await doneEvents(1000);
      const older = await db.sql.reserve();
      const locker = await db.sql.reserve();
      const s = await session();
      const other = await session();
      try {
        // The run first waits for a transaction older than it; meanwhile a newer one locks a row
        // of the fifth chunk, which then times out and retries until cancelled.
        await older`begin`;
        await older`select pg_current_xact_id()`;
        const call = s.sql`
          call spectrum.reprocess_in_chunks(status => 'done', chunk_size => 100)`.catch((e) => e);
        await until('the wait', () => s.notices.some((m) => /waiting for/.test(m)));
        await locker`begin`;
        await locker`select from spectrum.raw_events where id = ${ids[450]!} for update`;
        await older`commit`;
        await until('a lock timeout', () => s.notices.some((m) => /lock wait timed out/.test(m)));
        const [run] = await db.sql`select run_id from spectrum.reprocess_runs`;
        const runId = run!.run_id;
        expect(await progressOf(runId)).toMatchObject({ state: 'running', requeued: '400' });
        // One session at a time per run.
        const twice = await other.sql`call spectrum.reprocess_in_chunks(run_id => ${runId})`.catch(
          (e) => e,
        );
        expect(twice.code).toBe('55P03');

        await db.sql`select pg_cancel_backend(${s.pid})`;
        expect((await call).code).toBe('57014');
        await locker`rollback`;
        const stopped = await progressOf(runId);
        expect(stopped).toMatchObject({ state: 'interrupted', requeued: '400', chunks: 4 });
        expect(stopped.lock_timeouts).toBeGreaterThan(0);
        expect(await statuses(ids)).toEqual(ids.map((_, i) => (i < 400 ? 'pending' : 'done')));

        // The first 400 are processed again before the resume, which must not reset them twice.
        await runPipeline(db.sql);
        s.notices.length = 0;
        const [r] = await s.sql`call spectrum.reprocess_in_chunks(run_id => ${runId})`;
        expect(r!.run_id).toBe(runId);
        expect(s.notices[0]).toMatch(/resuming after id .* \(400 of 1000 rows re-queued\)/);
        expect(await statuses(ids)).toEqual(ids.map((_, i) => (i < 400 ? 'done' : 'pending')));
        expect(await progressOf(runId)).toMatchObject({
          state: 'finished',
          requeued: '1000',
          chunks: 10,
        });
        await counterIsExact(db.sql);
        await runPipeline(db.sql);
        await factsExactlyOnce();
        await counterIsExact(db.sql);
      } finally {
        await locker`rollback`.catch(() => {});
        locker.release();
        await older`rollback`.catch(() => {});
        older.release();
        await s.sql.end();
        await other.sql.end();
      }
    },
  );

  it('waits for the transactions in flight when it started before its first chunk', async () => {
    const ids = await doneEvents(200);
    const older = await db.sql.reserve();
    const s = await session();
    try {
      await older`begin`;
      await older`select pg_current_xact_id()`;
      const call = s.sql`
        call spectrum.reprocess_in_chunks(status => 'done', chunk_size => 50)`.then((r) => r);
      await until('the wait', () => s.notices.some((m) => /waiting for \d+ transactions/.test(m)));
      const [run] = await db.sql`select run_id from spectrum.reprocess_runs`;
      await new Promise((r) => setTimeout(r, 500));
      expect(await progressOf(run!.run_id)).toMatchObject({ state: 'running', requeued: '0' });
      expect(await statuses(ids)).toEqual(ids.map(() => 'done'));
      await older`commit`;
      await call;
      expect(await progressOf(run!.run_id)).toMatchObject({ state: 'finished', requeued: '200' });
    } finally {
      await older`rollback`.catch(() => {});
      older.release();
      await s.sql.end();
    }
  });

  it(
    'runs beside pipeline ticks and producers: ' +
      'every row interpreted again once, facts exactly once, counters exact',
    async () => {
      const ids = await doneEvents(3000);
      // Producer retries of 300 events: newer versions whose facts must win.
      const firsts = await db.sql`
        select id, payload from spectrum.raw_events where id = any (${ids.slice(0, 300)}::uuid[])`;
      const retries = await insertEvents(
        db.sql,
        firsts.map((f) => ({ ...(f.payload as object), event_id: f.id, user_id: 'retry' })),
      );
      await runPipeline(db.sql);
      const all = [...ids, ...retries].sort();
      const s = await session();
      const ticks = connect(db.url, { max: 1 });
      try {
        let running = true;
        const call = s.sql`
          call spectrum.reprocess_in_chunks(event_type => 'click', chunk_size => 25)`.finally(
          () => (running = false),
        );
        let rounds = 0;
        while (running) {
          await insertEvents(ticks, valid(10, { event_type: 'view' }));
          await runPipeline(ticks, 'p_batch_size => 100, p_max_batches => 1');
          rounds++;
        }
        const [r] = await call;
        const run = await progressOf(r!.run_id);
        expect(run).toMatchObject({ state: 'finished', requeued: '3300', matched: '3300' });
        expect(rounds).toBeGreaterThan(1);
        const [during] = await db.sql`
          select count(*)::int as n from spectrum.raw_events
           where id = any (${all}::uuid[])
             and processed_at between ${run.started_at} and ${run.finished_at}`;
        expect(during!.n).toBeGreaterThan(0);

        await runPipeline(db.sql);
        const [after] = await db.sql`
          select count(*) filter (where status = 'done' and processed_at > ${run.started_at})::int
                   as again,
                 count(*)::int as n
            from spectrum.raw_events where id = any (${all}::uuid[])`;
        expect(after).toEqual({ again: 3300, n: 3300 });
        const won = await db.sql`
          select count(*)::int as n from spectrum.fact_events where raw_event_id = any (${retries}::uuid[])`;
        expect(won[0]!.n).toBe(300);
        await factsExactlyOnce();
        await counterIsExact(db.sql);
        await statusIsExact(db.sql);
      } finally {
        await s.sql.end();
        await ticks.end();
      }
    },
  );

  it('refuses a bare call, a bad chunk size and a resume with filters, with 22023', async () => {
    await doneEvents(5);
    const calls = [
      'call spectrum.reprocess_in_chunks()',
      'call spectrum.reprocess_in_chunks(dry_run => true)',
      `call spectrum.reprocess_in_chunks(status => 'pending')`,
      `call spectrum.reprocess_in_chunks(status => 'done', chunk_size => 0)`,
      `call spectrum.reprocess_in_chunks(run_id => 424242)`,
    ];
    for (const c of calls) {
      const err = await db.sql.unsafe(c).catch((e) => e);
      expect(err.code, c).toBe('22023');
      expect(err.hint, c).toBeTruthy();
    }
    const [r] = await db.sql`call spectrum.reprocess_in_chunks(status => 'done')`;
    const err = await db.sql`
      call spectrum.reprocess_in_chunks(status => 'failed', run_id => ${r!.run_id})`.catch(
      (e) => e,
    );
    expect(err.code).toBe('22023');
    const s = await session();
    try {
      const [again] = await s.sql`call spectrum.reprocess_in_chunks(run_id => ${r!.run_id})`;
      expect(again!.run_id).toBe(r!.run_id);
      expect(s.notices).toEqual([expect.stringMatching(/finished at .*: 5 of 5 rows re-queued/)]);
    } finally {
      await s.sql.end();
    }
  });

  it('is for the operator role (not the producer), which reads the runs but cannot write them', async () => {
    const ids = await doneEvents(12);
    const o = operator.sql;
    const [r] = await o`
      call spectrum.reprocess_in_chunks(received_after => now() - interval '1 hour',
                                        chunk_size => 5)`;
    const [p] = await o`select state, requeued, chunks from spectrum.reprocess_progress
                         where run_id = ${r!.run_id}`;
    expect(p).toEqual({ state: 'finished', requeued: '12', chunks: 3 });
    expect(await statuses(ids)).toEqual(ids.map(() => 'pending'));
    const denied = await o`update spectrum.reprocess_runs set after_id = default`.catch((e) => e);
    expect(denied.code).toBe('42501');
    const raw = await o`update spectrum.raw_events set status = 'pending'`.catch((e) => e);
    expect(raw.code).toBe('42501');
    await counterIsExact(db.sql);

    const proc =
      'spectrum.reprocess_in_chunks(text, uuid[], timestamptz, timestamptz, text, uuid, ' +
      'integer, boolean, bigint)';
    for (const role of [producer.role, 'public']) {
      const [ok] = await db.sql`select has_function_privilege(${role}, ${proc}, 'execute') as ok`;
      expect(ok!.ok, role).toBe(false);
    }
    const err = await producer.sql`
      call spectrum.reprocess_in_chunks(status => 'done')`.catch((e) => e);
    expect(err.code).toBe('42501');
  });
});

/*
 * Concurrent process_pending calls. Four while a producer inserts (with retries of the same
 * event_id across inserts): every raw row is processed exactly once, every event has exactly
 * one fact from its most recently received valid version, and no deadlock occurs. Two over
 * the same backlog: no row is processed twice and the counters stay exact. Each test starts
 * from an empty raw_events.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { generateEvents } from '../scripts/lib/events.ts';
import { insertEvents, testDatabase, type TestDb } from './helpers/db.ts';
import { counterIsExact, fresh, valid } from './helpers/fixtures.ts';

let db: TestDb;
beforeAll(async () => {
  db = await testDatabase('concurrency');
});
afterAll(async () => db?.drop());
beforeEach(() => fresh(db.sql));

it('processes each row once under four concurrent calls and a live producer', async () => {
  const deadlocksBefore = (
    await db.sql<
      { deadlocks: number }[]
    >`select deadlocks::int from pg_stat_database where datname = current_database()`
  )[0]!.deadlocks;
  const events = [
    ...generateEvents({
      count: 12_000,
      seed: 7,
      accounts: 40,
      users: 400,
      places: 30,
      malformed: 0.02,
      retries: 0.05,
    }),
  ];
  // The same event again, later, with a different type: the retry must win.
  const retried = events
    .filter((_, i) => i % 97 === 0)
    .map((e) => ({ ...e, event_type: 'retried' }));
  const chunks: unknown[][] = [];
  for (let i = 0; i < events.length; i += 500) chunks.push(events.slice(i, i + 500));
  chunks.push(retried);

  let producing = true;
  const producer = (async () => {
    for (const c of chunks) await insertEvents(db.sql, c);
    producing = false;
  })();
  const worker = async () => {
    const s = await db.sql.reserve();
    try {
      while (producing) await s`call spectrum.process_pending(p_batch_size => 300)`;
      await s`call spectrum.process_pending(p_batch_size => 300)`;
    } finally {
      s.release();
    }
  };
  await Promise.all([producer, worker(), worker(), worker(), worker()]);
  await db.sql`call spectrum.process_pending()`;

  const [counts] = await db.sql`
    select count(*)::int as total,
           count(*) filter (where status = 'done')::int as done,
           count(*) filter (where status = 'failed')::int as failed,
           count(*) filter (where attempts <> 1)::int as not_once
      from spectrum.raw_events`;
  expect(counts!.total).toBe(events.length + retried.length);
  expect(counts!.done + counts!.failed).toBe(counts!.total);
  expect(counts!.not_once).toBe(0);

  // One fact per distinct valid event, from its most recently received valid raw row.
  const mismatches = await db.sql`
    with valid as (
      select coalesce((payload->>'event_id')::uuid, id) as event_id, id, received_at
        from spectrum.raw_events where status = 'done'
    ), newest as (
      select distinct on (event_id) event_id, id
        from valid order by event_id, received_at desc, id desc
    )
    select n.event_id from newest n
      left join spectrum.fact_events f on f.event_id = n.event_id
     group by n.event_id, n.id
    having count(f.*) <> 1 or min(f.raw_event_id::text) <> n.id::text`;
  expect(mismatches).toEqual([]);
  const [facts] = await db.sql`
    select count(*)::int as n, count(distinct event_id)::int as d from spectrum.fact_events`;
  expect(facts!.n).toBe(facts!.d);
  const [retriedFacts] =
    await db.sql`select count(*)::int as n from spectrum.fact_events where event_type = 'retried'`;
  // Retries of malformed events may still be malformed; nearly all retries are valid.
  expect(retriedFacts!.n).toBeGreaterThan(retried.length * 0.9);

  const [runs] = await db.sql`
    select sum(done)::int as done, sum(failed)::int as failed from spectrum.pipeline_runs`;
  expect(runs).toEqual({ done: counts!.done, failed: counts!.failed });
  const deadlocks = (
    await db.sql<
      { deadlocks: number }[]
    >`select deadlocks::int from pg_stat_database where datname = current_database()`
  )[0]!.deadlocks;
  expect(deadlocks).toBe(deadlocksBefore);
});

describe('overlapping calls of process_pending', () => {
  it(
    'never process a row twice: ' + 'every row once, one fact per event, the counter exact',
    async () => {
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
      expect(await counterIsExact(db.sql)).toBe(3000);
    },
  );
});

/*
 * Four concurrent process_pending calls while a producer inserts (with retries of the same
 * event_id across inserts): every raw row is processed exactly once, every event has exactly
 * one fact from its most recently received valid version, and no deadlock occurs.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateEvents } from '../scripts/lib/events.ts';
import { insertEvents, testDatabase, type TestDb } from './helpers/db.ts';

let db: TestDb;
beforeAll(async () => {
  db = await testDatabase('concurrency');
});
afterAll(async () => db?.drop());

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
      select distinct on (event_id) event_id, id from valid order by event_id, received_at desc, id desc
    )
    select n.event_id from newest n
      left join spectrum.fact_events f on f.event_id = n.event_id
     group by n.event_id, n.id
    having count(f.*) <> 1 or min(f.raw_event_id::text) <> n.id::text`;
  expect(mismatches).toEqual([]);
  const [facts] =
    await db.sql`select count(*)::int as n, count(distinct event_id)::int as d from spectrum.fact_events`;
  expect(facts!.n).toBe(facts!.d);
  const [retriedFacts] =
    await db.sql`select count(*)::int as n from spectrum.fact_events where event_type = 'retried'`;
  // Retries of malformed events may still be malformed; nearly all retries are valid.
  expect(retriedFacts!.n).toBeGreaterThan(retried.length * 0.9);

  const [runs] =
    await db.sql`select sum(done)::int as done, sum(failed)::int as failed from spectrum.pipeline_runs`;
  expect(runs).toEqual({ done: counts!.done, failed: counts!.failed });
  const deadlocks = (
    await db.sql<
      { deadlocks: number }[]
    >`select deadlocks::int from pg_stat_database where datname = current_database()`
  )[0]!.deadlocks;
  expect(deadlocks).toBe(deadlocksBefore);
});

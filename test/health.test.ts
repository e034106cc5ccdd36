/*
 * spectrum.health(): one row saying whether the pipeline keeps up (a stale backlog, a failure
 * rate, a last run that died), with thresholds by name. Each test starts after a clean run of
 * 20 events.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import { fresh, loginRole, valid, type Login } from './helpers/fixtures.ts';

let db: TestDb;
let operator: Login;
beforeAll(async () => {
  db = await testDatabase('health');
  operator = await loginRole(db, 'op', 'spectrum_operator');
});
afterAll(async () => {
  await operator?.drop();
  await db?.drop();
});

describe('spectrum.health()', () => {
  const health = async () => (await db.sql`select * from spectrum.health()`)[0]!;
  /** Two pending rows received 3 and 25 minutes ago, which will fail (no event_type). */
  const staleBacklog = () => db.sql`
    insert into spectrum.raw_events (payload, received_at)
    values ('{}', now() - interval '3 minutes'), ('{}', now() - interval '25 minutes')`;
  beforeEach(async () => {
    await fresh(db.sql);
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
    await staleBacklog();
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
    await staleBacklog();
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
    await db.sql`
      update spectrum.pipeline_runs
         set started_at = started_at - interval '1 hour',
             finished_at = finished_at - interval '1 hour'`;
    await db.sql`
      insert into spectrum.pipeline_runs (started_at) values (now() - interval '1 minute')`;
    const running = (await db.sql`select * from spectrum.health(p_max_failure_rate => 1)`)[0]!;
    expect(running.last_run_finished).toBe(false);
    expect(running.ok).toBe(true);
    await db.sql`
      update spectrum.pipeline_runs set started_at = now() - interval '30 minutes'
       where finished_at is null`;
    const died = (await db.sql`select * from spectrum.health(p_max_failure_rate => 1)`)[0]!;
    expect(died.last_run_finished).toBe(false);
    expect(died.ok).toBe(false);
    expect(died.problems).toHaveLength(1);
    expect(died.last_success_at).not.toBeNull();
  });

  it('is callable by the operator role', async () => {
    await staleBacklog(); // something to report
    const [h] = await operator.sql`select ok, problems from spectrum.health()`;
    expect(h!.ok).toBe(false);
  });
});

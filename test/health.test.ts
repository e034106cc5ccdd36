/*
 * spectrum.health(): one row saying whether the pipeline keeps up (a stale backlog, a failure
 * rate, a last run that died, next month's fact partition, old partitions that retention left),
 * with thresholds by name, and what it cannot check: here pg_cron lives in another database
 * (its jobs are checked in schedule.test.ts). Each test starts after a clean run of 20 events,
 * with the partitions maintenance makes and no expected job.
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
    await db.sql`truncate spectrum.scheduled_jobs`;
    await db.sql`update spectrum.settings set fact_retention_months = null`;
    await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
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

  it("flags next month's missing fact partition, until maintenance creates it", async () => {
    const h = await health();
    expect(h.next_fact_partition_exists).toBe(true);
    await db.sql`drop table ${db.sql(`spectrum.${h.next_fact_partition}`)}`;
    const missing = await health();
    expect(missing.next_fact_partition_exists).toBe(false);
    expect(missing.ok).toBe(false);
    expect(missing.problems).toEqual([expect.stringContaining(h.next_fact_partition)]);
    await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
    expect((await health()).ok).toBe(true);
  });

  it('says it cannot check the jobs when pg_cron keeps them in another database', async () => {
    const none = await health();
    expect(none.jobs_expected).toBe(0);
    expect(none.unchecked).toEqual([expect.stringMatching(/^jobs: none expected/)]);
    await db.sql`
      insert into spectrum.scheduled_jobs (name, schedule, command, cron_database)
      values ('spectrum.process_pending', '*/5 * * * *', 'CALL spectrum.process_pending()',
              'postgres'),
             ('spectrum.maintenance', '17 * * * *', 'CALL spectrum.maintenance()', 'postgres')`;
    const h = await health();
    expect(h.ok).toBe(true);
    expect(h.jobs_expected).toBe(2);
    expect(h.jobs_checked).toBe(0);
    expect(h.unchecked).toHaveLength(1);
    expect(h.unchecked[0]).toMatch(/^jobs: pg_cron keeps its jobs in database postgres/);
  });

  it('flags fact partitions past the retention that maintenance could not detach', async () => {
    const [{ old }] = (await db.sql`
      select (date_trunc('month', now() at time zone 'UTC') - interval '3 years')
             at time zone 'UTC' as old`) as unknown as [{ old: Date }];
    await db.sql`select spectrum.ensure_fact_partitions(array[${old}::timestamptz])`;
    await db.sql`update spectrum.settings set fact_retention_months = 12`;
    // Set, but no maintenance run has tried yet: not a problem.
    const pending = await health();
    expect(pending.fact_partitions_overdue).toBe(1);
    expect(pending.ok).toBe(true);
    const reader = await db.sql.reserve();
    try {
      await reader`begin`;
      await reader`select count(*) from spectrum.fact_events`; // a long report holds it
      await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
      await reader`commit`;
    } finally {
      reader.release();
    }
    const busy = await health();
    expect(busy.ok).toBe(false);
    expect(busy.problems).toEqual([expect.stringMatching(/^retention: 1 fact partitions/)]);
    await db.sql`call spectrum.maintenance(p_retention => '10 years')`;
    const done = await health();
    expect(done.fact_partitions_overdue).toBe(0);
    expect(done.ok).toBe(true);
  });

  it('is callable by the operator role', async () => {
    await staleBacklog(); // something to report
    const [h] = await operator.sql`select ok, problems from spectrum.health()`;
    expect(h!.ok).toBe(false);
  });
});

/*
 * The pg_cron schedule: applySchedule (sql/schedule.json) on a cluster of its own, where
 * pg_cron lives in the postgres database and the pipeline in others; where pg_cron lives in the
 * pipeline's database, maintenance pruning cron.job_run_details and health checking the jobs
 * applySchedule recorded; and the real tick on the shared test server: a one-minute job that
 * runs CALL spectrum.process_pending().
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { connect, type Sql } from '../scripts/lib/db.ts';
import { migrateDatabase } from '../scripts/lib/migrate.ts';
import { projectRoot } from '../scripts/lib/paths.ts';
import { applySchedule, readSchedule, type Job } from '../scripts/lib/schedule.ts';
import { insertEvents, testDatabase, type TestDb } from './helpers/db.ts';
import { privateCluster } from './setup/server.ts';

/** The committed migrations plus the uncommitted plan, as the test template gets them. */
async function migrateWithPlan(url: string) {
  await migrateDatabase(url, { schedule: false, log: () => {} });
  const current = readFileSync(join(projectRoot, 'migrations', 'current.sql'), 'utf8');
  if (!current.trim()) return;
  const sql = connect(url, { max: 1 });
  await sql.begin((tx) => tx.unsafe(current));
  await sql.end();
}

/** CREATE EXTENSION pg_cron where the cluster runs it, tolerating a concurrent creator. */
async function ensureCron(admin: Sql) {
  for (let attempt = 0; ; attempt++) {
    try {
      await admin`create extension if not exists pg_cron`;
      return;
    } catch (e) {
      if (!['23505', '42710'].includes((e as { code?: string }).code ?? '') || attempt > 5) throw e;
    }
  }
}

describe('applySchedule, with pg_cron in another database', () => {
  let cluster: Awaited<ReturnType<typeof privateCluster>>;
  let cron: Sql;
  const jobs = () => cron<
    { jobid: number; jobname: string; schedule: string; command: string; database: string }[]
  >`
    select jobid, jobname, schedule, command, database from cron.job order by jobname`;
  const apply = async (database: string, list?: Job[]) => {
    const lines: string[] = [];
    const result = await applySchedule(cluster.url(database), list, (l) => lines.push(l));
    return { result, lines };
  };

  beforeAll(async () => {
    cluster = await privateCluster();
    cron = connect(cluster.url('postgres'), { max: 1 });
    await ensureCron(cron);
  });
  // Each test starts with no job and two empty databases.
  beforeEach(async () => {
    await cron`select cron.unschedule(jobid) from cron.job`;
    for (const name of ['alpha', 'beta']) {
      await cron`drop database if exists ${cron(name)} with (force)`;
      await cron`create database ${cron(name)}`;
    }
  });
  afterAll(async () => {
    await cron?.end();
    cluster?.stop();
  });

  it('schedules every job of sql/schedule.json for the target database', async () => {
    const { result, lines } = await apply('alpha');
    expect(result).toBe('applied');
    expect(lines).toHaveLength(2);
    const want = readSchedule().map((j) => ({
      jobname: j.name,
      schedule: j.schedule,
      command: j.command,
      database: 'alpha',
    }));
    expect((await jobs()).map(({ jobid: _, ...j }) => j)).toEqual(
      want.sort((a, b) => a.jobname.localeCompare(b.jobname)),
    );
    expect(want.map((j) => j.jobname).sort()).toEqual([
      'spectrum.maintenance',
      'spectrum.process_pending',
    ]);
  });

  it('changes nothing the second time', async () => {
    await apply('alpha');
    const before = await jobs();
    const { lines } = await apply('alpha');
    expect(lines).toEqual([]);
    expect(await jobs()).toEqual(before);
  });

  it('updates a changed job in place', async () => {
    await apply('alpha');
    const before = await jobs();
    const changed = readSchedule().map((j) =>
      j.name === 'spectrum.process_pending' ? { ...j, schedule: '*/2 * * * *' } : j,
    );
    const { lines } = await apply('alpha', changed);
    expect(lines).toHaveLength(1);
    const after = await jobs();
    expect(after.map((j) => j.jobid)).toEqual(before.map((j) => j.jobid));
    expect(after.find((j) => j.jobname === 'spectrum.process_pending')!.schedule).toBe(
      '*/2 * * * *',
    );
    expect((await apply('alpha')).lines).toHaveLength(1);
    expect(await jobs()).toEqual(before);
  });

  it('unschedules a spectrum job removed from the file, and leaves other jobs alone', async () => {
    await apply('alpha');
    await cron`select cron.schedule('other.job', '0 0 1 1 *', 'select 1')`;
    const { lines } = await apply(
      'alpha',
      readSchedule().filter((j) => j.name !== 'spectrum.maintenance'),
    );
    expect(lines).toHaveLength(1);
    expect((await jobs()).map((j) => j.jobname)).toEqual(['other.job', 'spectrum.process_pending']);
    await cron`select cron.unschedule('other.job')`;
    await apply('alpha');
    expect(await jobs()).toHaveLength(2);
  });

  it('runs "workers": N copies of a job, and unschedules the extra ones when N goes down', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spectrum-schedule-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = (workers: unknown) => {
      const f = join(dir, `schedule-${JSON.stringify(workers)}.json`);
      const text = readFileSync(join(projectRoot, 'sql', 'schedule.json'), 'utf8');
      writeFileSync(f, text.replace('"workers": 1', `"workers": ${JSON.stringify(workers)}`));
      return f;
    };
    await apply('alpha', readSchedule(file(3)));
    const three = (await jobs()).filter((j) => j.jobname.startsWith('spectrum.process_pending'));
    expect(three.map((j) => [j.jobname, j.schedule, j.command])).toEqual(
      ['spectrum.process_pending', 'spectrum.process_pending/2', 'spectrum.process_pending/3'].map(
        (name) => [name, '*/5 * * * *', 'CALL spectrum.process_pending()'],
      ),
    );
    await apply('alpha', readSchedule(file(1)));
    expect((await jobs()).map((j) => j.jobname)).toEqual([
      'spectrum.maintenance',
      'spectrum.process_pending',
    ]);
    for (const bad of [0, 2.5, '2', 17])
      expect(() => readSchedule(file(bad))).toThrow(
        /jobs\[0\]\.workers must be a whole number from 1 to 16, got .*: e\.g\. "workers": 2/,
      );
  });

  it(
    'never takes over a job of the same name that runs another database; ' +
      'takes one whose database was dropped',
    async () => {
      await apply('alpha');
      const before = await jobs();
      const { result, lines } = await apply('beta');
      expect(result).toBe('applied');
      expect(lines).toHaveLength(2);
      expect(await jobs()).toEqual(before);

      await cron`drop database alpha`;
      await apply('beta');
      const after = await jobs();
      expect(after.map((j) => j.jobid)).toEqual(before.map((j) => j.jobid));
      expect(after.map((j) => j.database)).toEqual(['beta', 'beta']);
    },
  );
});

describe('maintenance and health, with pg_cron in the same database', () => {
  let cluster: Awaited<ReturnType<typeof privateCluster>>;
  let sql: Sql;
  let operator: Sql;

  beforeAll(async () => {
    cluster = await privateCluster({ cronDatabase: 'pipeline' });
    const admin = connect(cluster.url('postgres'), { max: 1 });
    await admin`create database pipeline`;
    await admin.end();
    await migrateWithPlan(cluster.url('pipeline'));
    sql = connect(cluster.url('pipeline'), { max: 1 });
    await sql`create role watcher login in role spectrum_operator`;
    const url = new URL(cluster.url('pipeline'));
    url.username = 'watcher';
    operator = connect(url.toString(), { max: 1 });
  });
  // No job, no run, nothing expected.
  beforeEach(async () => {
    await sql`select cron.unschedule(jobid) from cron.job`;
    await sql`delete from cron.job_run_details`;
    await sql`truncate spectrum.scheduled_jobs`;
  });
  afterAll(async () => {
    await operator?.end();
    await sql?.end();
    cluster?.stop();
  });

  /** Workers beside the usual jobs, on a schedule that does not fire during the test. */
  const yearly = (names: string[]): Job[] =>
    names.map((name) => ({
      name,
      schedule: '0 0 1 1 *',
      command: name.startsWith('spectrum.maintenance')
        ? 'CALL spectrum.maintenance()'
        : 'CALL spectrum.process_pending()',
    }));
  const threeJobs = yearly([
    'spectrum.maintenance',
    'spectrum.process_pending',
    'spectrum.process_pending_2',
  ]);
  const health = async (as = sql) =>
    (await as`select * from spectrum.health(p_max_failure_rate => 1)`)[0]!;

  it('applySchedule records the jobs it applied; health checks each, for any caller', async () => {
    await sql`call spectrum.maintenance()`; // partitions ahead
    const lines: string[] = [];
    await applySchedule(cluster.url('pipeline'), threeJobs, (l) => lines.push(l));
    expect(lines).toHaveLength(3);
    const recorded = await sql`
      select name, schedule, command, cron_database from spectrum.scheduled_jobs order by name`;
    expect(recorded).toEqual(threeJobs.map((j) => ({ ...j, cron_database: 'pipeline' })));
    for (const as of [sql, operator]) {
      const h = await health(as);
      expect(h).toMatchObject({ ok: true, problems: [], unchecked: [] });
      expect(h).toMatchObject({ jobs_expected: 3, jobs_checked: 3 });
    }
    // The operator itself sees no job: row security shows them to health's owner only.
    const [seen] = await operator`select count(*)::int as n from cron.job`.catch(() => [{ n: 0 }]);
    expect(seen!.n).toBe(0);

    // A second apply changes no applied_at; a job removed from the file leaves the record.
    const [before] = await sql`select max(applied_at) as at from spectrum.scheduled_jobs`;
    await applySchedule(cluster.url('pipeline'), threeJobs.slice(0, 2), () => {});
    const after = await sql`select name, applied_at from spectrum.scheduled_jobs order by name`;
    expect(after.map((r) => r.name)).toEqual(['spectrum.maintenance', 'spectrum.process_pending']);
    expect(after.map((r) => r.applied_at)).toEqual([before!.at, before!.at]);
    expect((await health()).jobs_checked).toBe(2);
  });

  it('flags a job that is missing, inactive, failing or late', async () => {
    await sql`call spectrum.maintenance()`;
    await applySchedule(cluster.url('pipeline'), threeJobs, () => {});
    const jobid = async (name: string) =>
      (await sql`select jobid from cron.job where jobname = ${name}`)[0]!.jobid as string;
    await sql`
      insert into cron.job_run_details
             (jobid, runid, job_pid, database, username, command, status, return_message,
              start_time, end_time)
      values (${await jobid('spectrum.process_pending_2')}, nextval('cron.runid_seq'), 1,
              'pipeline', current_user, 'CALL spectrum.process_pending()', 'failed',
              'ERROR:  canceling statement due to statement timeout',
              now() - interval '1 minute', now())`;
    await sql`select cron.alter_job(${await jobid('spectrum.maintenance')}::bigint, active => false)`;
    await sql`select cron.unschedule(${await jobid('spectrum.process_pending')}::bigint)`;
    const h = await health();
    expect(h.ok).toBe(false);
    expect([...h.problems].sort()).toEqual([
      expect.stringMatching(/^job spectrum\.maintenance: inactive/),
      expect.stringMatching(/^job spectrum\.process_pending: not in cron\.job/),
      expect.stringMatching(
        /^job spectrum\.process_pending_2: its last run, .* failed: .*statement timeout$/,
      ),
    ]);

    // Applied two years ago, due every 1 January, never run: late, unless it runs.
    await sql`select cron.alter_job(${await jobid('spectrum.maintenance')}::bigint, active => true)`;
    await applySchedule(cluster.url('pipeline'), threeJobs, () => {});
    await sql`delete from cron.job_run_details`;
    await sql`update spectrum.scheduled_jobs set applied_at = now() - interval '2 years'`;
    const late = await health();
    expect(late.problems).toHaveLength(3);
    for (const p of late.problems) expect(p).toMatch(/: late: its schedule '0 0 1 1 \*' named /);
    await sql`
      insert into cron.job_run_details
             (jobid, runid, job_pid, database, username, command, status, return_message,
              start_time, end_time)
      select jobid, nextval('cron.runid_seq'), 1, 'pipeline', current_user, command,
             'succeeded', 'CALL', now() - interval '1 minute', now()
        from cron.job`;
    expect(await health()).toMatchObject({ ok: true, problems: [] });
  });

  it('prunes cron.job_run_details older than p_cron_history', async () => {
    await sql`
      insert into cron.job_run_details
             (jobid, job_pid, database, username, command, status, return_message,
              start_time, end_time)
      select 1, 1, 'pipeline', 'postgres', 'CALL spectrum.process_pending()', 'succeeded', 'CALL',
             t, t + interval '1 second'
        from unnest(array[now() - interval '30 days', now() - interval '8 days',
                          now() - interval '2 days', now() - interval '1 hour']) t`;
    await sql`call spectrum.maintenance()`;
    const [run] = await sql`
      select cron_details_deleted::int, note
        from spectrum.maintenance_runs order by run_id desc limit 1`;
    expect(run).toEqual({ cron_details_deleted: 2, note: null });
    await sql`call spectrum.maintenance(p_cron_history => '1 day')`;
    const [left] = await sql`select count(*)::int as n from cron.job_run_details`;
    expect(left!.n).toBe(1);
  });
});

describe('the pg_cron tick', () => {
  let db: TestDb;
  let cron: Sql;
  let jobname: string;

  beforeAll(async () => {
    db = await testDatabase('tick');
    cron = connect(db.adminUrl, { max: 1 });
    await ensureCron(cron);
    jobname = `spectrum.tick_test_${db.name}`;
  });
  afterAll(async () => {
    if (cron) {
      await cron`select cron.unschedule(jobid) from cron.job where jobname = ${jobname}`;
      await cron.end();
    }
    await db?.drop();
  });

  it('runs CALL spectrum.process_pending() on a one-minute schedule', async () => {
    const ids = await insertEvents(db.sql, [
      { event_type: 'tick', account_id: '8d4a8d2c-4b1e-4f7e-9c53-0a3a3c1d2e10' },
      { event_type: 'tick', account_id: 'not-a-uuid' },
    ]);
    const scheduled = await cron<{ jobid: string }[]>`
      select cron.schedule_in_database(${jobname}, '* * * * *',
                                       'CALL spectrum.process_pending()', ${db.name}) as jobid`;
    const jobid = scheduled[0]!.jobid;
    const deadline = Date.now() + 150_000;
    let state = { pending: ids.length, succeeded: 0 };
    while (Date.now() < deadline) {
      const [raw] = await db.sql`
        select count(*) filter (where status = 'pending')::int as pending from spectrum.raw_events`;
      const [runs] = await cron`
        select count(*) filter (where status = 'succeeded')::int as succeeded
          from cron.job_run_details where jobid = ${jobid}`;
      state = { pending: raw!.pending, succeeded: runs!.succeeded };
      if (state.pending === 0 && state.succeeded > 0) break;
      await new Promise((r) => setTimeout(r, 2000));
    }
    expect(state).toEqual({ pending: 0, succeeded: expect.any(Number) });
    expect(state.succeeded).toBeGreaterThan(0);
    const statuses = await db.sql`select status from spectrum.raw_events order by id`;
    expect(statuses.map((s) => s.status)).toEqual(['done', 'failed']);
    const [run] = await db.sql`
      select finished_at is not null as finished, done::int, failed::int
        from spectrum.pipeline_runs order by run_id limit 1`;
    expect(run).toEqual({ finished: true, done: 1, failed: 1 });
  }, 180_000);
});

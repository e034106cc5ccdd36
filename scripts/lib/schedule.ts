/*
 * Applies sql/schedule.json to pg_cron. pg_cron runs jobs from one database of the cluster
 * (cron.database_name); when that is not the pipeline's database the jobs are scheduled
 * there with cron.schedule_in_database. Idempotent: unchanged jobs are left alone, changed
 * ones are updated in place (same jobid), spectrum.* jobs no longer in the file are removed.
 * pg_cron keeps one job per (name, user) for the whole cluster, and scheduling a name that
 * exists upserts it: so a job of the same name that runs another, existing database is never
 * taken over (one line says so); one whose database was dropped is moved here.
 *
 * What it applied is recorded in spectrum.scheduled_jobs of the target database, where
 * spectrum.health checks each job. When pg_cron lives in that same database, health's owner
 * (spectrum_definer) is let read the pipeline's jobs, which pg_cron's row security hides from
 * every user but their owner: usage on schema cron and a policy on cron.job and
 * cron.job_run_details.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, databaseOf, withDatabase, type Sql } from './db.ts';
import { projectRoot } from './paths.ts';

export interface Job {
  name: string;
  schedule: string;
  command: string;
}

/** The most workers one job may ask for: each holds a connection and a background worker. */
export const MAX_WORKERS = 16;

/**
 * The jobs of the file. A job with "workers": N (default 1) becomes N jobs of the same schedule
 * and command, named `name`, `name/2` … `name/N`: concurrent calls of process_pending share the
 * backlog (their claims skip each other's rows).
 */
export function readSchedule(file = join(projectRoot, 'sql', 'schedule.json')): Job[] {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { jobs?: unknown };
  if (!Array.isArray(parsed.jobs))
    throw new Error(`${file}: expected {"jobs": [{"name", "schedule", "command"}, …]}`);
  return parsed.jobs.flatMap((j: Record<string, unknown>, i: number) => {
    for (const k of ['name', 'schedule', 'command'])
      if (typeof j[k] !== 'string' || j[k] === '')
        throw new Error(`${file}: jobs[${i}].${k} must be a non-empty string`);
    if (!String(j.name).startsWith('spectrum.'))
      throw new Error(`${file}: jobs[${i}].name must start with "spectrum."`);
    const workers = j.workers ?? 1;
    if (!Number.isInteger(workers) || (workers as number) < 1 || (workers as number) > MAX_WORKERS)
      throw new Error(
        `${file}: jobs[${i}].workers must be a whole number from 1 to ${MAX_WORKERS}, got ` +
          `${JSON.stringify(workers)}: e.g. "workers": 2`,
      );
    const job = { name: String(j.name), schedule: String(j.schedule), command: String(j.command) };
    return Array.from({ length: workers as number }, (_, w) =>
      w === 0 ? job : { ...job, name: `${job.name}/${w + 1}` },
    );
  });
}

/** Where pg_cron lives for the database at `url`: null when it is not usable. */
export async function cronHome(sql: Sql): Promise<{ database: string; reason?: string } | null> {
  const [row] = await sql<{ here: boolean; preload: string; crondb: string | null }[]>`
    select exists (select from pg_catalog.pg_extension where extname = 'pg_cron') as here,
           current_setting('shared_preload_libraries') as preload,
           current_setting('cron.database_name', true) as crondb`;
  if (row!.here) return { database: (await sql`select current_database() as d`)[0]!.d as string };
  if (!/\bpg_cron\b/.test(row!.preload) || !row!.crondb) return null;
  return { database: row!.crondb };
}

export async function applySchedule(
  url: string,
  jobs: Job[] = readSchedule(),
  log = console.log,
): Promise<'applied' | 'no-cron'> {
  const target = databaseOf(url);
  const sql = connect(url, { max: 1 });
  let cron: Sql | null = null;
  try {
    const home = await cronHome(sql);
    if (!home) {
      log(
        'pg_cron is not installed in this cluster: jobs not scheduled (install ' +
          'postgresql-15-cron and preload it, or run CALL spectrum.process_pending() ' +
          'from another scheduler)',
      );
      return 'no-cron';
    }
    cron = home.database === target ? sql : connect(withDatabase(url, home.database), { max: 1 });
    const [ext] =
      await cron`select exists (select from pg_catalog.pg_extension where extname = 'pg_cron')
                    as ok`;
    if (!ext!.ok) {
      log(
        `pg_cron is preloaded but CREATE EXTENSION pg_cron has not been run in database ` +
          `${home.database}: jobs not scheduled`,
      );
      return 'no-cron';
    }
    const all = await cron<
      {
        jobid: number;
        jobname: string;
        schedule: string;
        command: string;
        database: string;
        mine: boolean;
        live: boolean;
      }[]
    >`
      select j.jobid, j.jobname, j.schedule, j.command, j.database,
             j.username = current_user as mine,
             exists (select from pg_catalog.pg_database d where d.datname = j.database) as live
        from cron.job j
       where j.jobname like 'spectrum.%'`;
    const existing = all.filter((e) => e.database === target);
    for (const job of jobs) {
      const have = existing.find((e) => e.jobname === job.name);
      // Only this user's jobs share the name space that schedule_in_database upserts into.
      const elsewhere = all.find((e) => e.jobname === job.name && e.database !== target && e.mine);
      if (have && have.schedule === job.schedule && have.command === job.command) continue;
      if (have) {
        await cron`select cron.alter_job(${have.jobid}::bigint,
                                 schedule => ${job.schedule}, command => ${job.command})`;
      } else if (elsewhere?.live) {
        log(
          `${job.name} not scheduled in database ${target}: this user's job of that name runs ` +
            `database ${elsewhere.database} ` +
            `(pg_cron keeps one job per name and user); apply the schedule as another user to ` +
            `run both`,
        );
        continue;
      } else if (elsewhere) {
        await cron`select cron.alter_job(${elsewhere.jobid}::bigint,
                                 schedule => ${job.schedule}, command => ${job.command},
                                 database => ${target})`;
      } else {
        await cron`select cron.schedule_in_database(${job.name}, ${job.schedule},
                                                ${job.command}, ${target})`;
      }
      log(`scheduled ${job.name} (${job.schedule}) in database ${target}`);
    }
    for (const stale of existing.filter((e) => !jobs.some((j) => j.name === e.jobname))) {
      await cron`select cron.unschedule(${stale.jobid}::bigint)`;
      log(`unscheduled ${stale.jobname}: it is no longer in sql/schedule.json`);
    }
    await recordJobs(sql, jobs, home.database);
    if (home.database === target) await letHealthReadJobs(sql, log);
    return 'applied';
  } finally {
    if (cron && cron !== sql) await cron.end();
    await sql.end();
  }
}

/**
 * Makes spectrum.scheduled_jobs say what was applied: jobs no longer in the file go, a changed
 * job gets a new applied_at, an unchanged one keeps its own. A database without the table (not
 * migrated yet) is left alone.
 */
async function recordJobs(sql: Sql, jobs: Job[], cronDatabase: string) {
  const [t] = await sql`select to_regclass('spectrum.scheduled_jobs') is not null as ok`;
  if (!t!.ok) return;
  await sql.begin(async (tx) => {
    await tx`delete from spectrum.scheduled_jobs where not (name = any (${jobs.map((j) => j.name)}))`;
    for (const job of jobs)
      await tx`
        insert into spectrum.scheduled_jobs as s (name, schedule, command, cron_database)
        values (${job.name}, ${job.schedule}, ${job.command}, ${cronDatabase})
        on conflict (name) do update
          set schedule = excluded.schedule, command = excluded.command,
              cron_database = excluded.cron_database, applied_at = excluded.applied_at
        where (s.schedule, s.command, s.cron_database)
              is distinct from (excluded.schedule, excluded.command, excluded.cron_database)`;
  });
}

/** The policies of letHealthReadJobs, by table of schema cron. */
const HEALTH_POLICIES = {
  job: `jobname like 'spectrum.%' and database = pg_catalog.current_database()`,
  job_run_details: `jobid in (select j.jobid from cron.job j where j.jobname like 'spectrum.%'
                                 and j.database = pg_catalog.current_database())`,
};

/**
 * pg_cron in the pipeline's database: lets spectrum_definer, which owns spectrum.health, read
 * the pipeline's jobs and their runs (only those). Needs the owner of pg_cron's tables (the
 * superuser who created the extension); anyone else gets one line saying what to run.
 */
async function letHealthReadJobs(sql: Sql, log: (line: string) => void) {
  const [role] = await sql`
    select exists (select from pg_catalog.pg_roles where rolname = 'spectrum_definer') as ok`;
  if (!role!.ok) return;
  const missing = await sql<{ tablename: string }[]>`
    select t.tablename from unnest(${Object.keys(HEALTH_POLICIES)}::text[]) t(tablename)
     where not exists (select from pg_catalog.pg_policies p
                        where p.schemaname = 'cron' and p.tablename = t.tablename
                          and p.policyname = 'spectrum_health_reads')`;
  const [usage] = await sql`
    select has_schema_privilege('spectrum_definer', 'cron', 'usage') as ok`;
  if (missing.length === 0 && usage!.ok) return;
  const statements = [
    'grant usage on schema cron to spectrum_definer',
    ...missing.map(
      ({ tablename }) =>
        `create policy spectrum_health_reads on cron.${tablename} for select ` +
        `to spectrum_definer using (${HEALTH_POLICIES[tablename as keyof typeof HEALTH_POLICIES]})`,
    ),
  ];
  try {
    await sql.begin(async (tx) => {
      for (const s of statements) await tx.unsafe(s);
    });
  } catch (e) {
    if ((e as { code?: string }).code !== '42501') throw e;
    log(
      'spectrum.health cannot check the jobs: only the owner of pg_cron may let it read ' +
        `cron.job; as that owner run: ${statements.map((s) => s.replace(/\s+/g, ' ')).join('; ')}`,
    );
  }
}

/*
 * job_problems: spectrum.health's check of the pg_cron jobs this database expects
 * (spectrum.scheduled_jobs): each must be in cron.job, active, its last finished run not failed,
 * and started at the latest time its schedule names that is p_late_after old. When pg_cron keeps
 * its jobs in another database, or row security hides them, it says so in unchecked. pg_cron's
 * settings are readable by superusers only: where pg_cron lives comes from scheduled_jobs.
 * Runs as health's owner, spectrum_definer, which applySchedule lets read the jobs.
 */
-- A job as expected and as pg_cron has it: the row type of job_problems' dynamic query.
do $$
begin
  if to_regtype('spectrum.cron_job_state') is null then
    create type spectrum.cron_job_state as (
      name text, want_schedule text, want_command text, applied_at timestamptz,
      jobid bigint, schedule text, command text, active boolean,
      last_status text, last_start timestamptz,
      finished_status text, finished_start timestamptz, return_message text
    );
  end if;
end
$$;

comment on type spectrum.cron_job_state is 'Internal: one expected job of spectrum.scheduled_jobs beside its cron.job row and last runs, as spectrum.job_problems reads them.';

create or replace function spectrum.job_problems(
  p_late_after interval default '10 minutes',
  out expected integer,
  out checked integer,
  out problems text[],
  out unchecked text[]
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_crondb text;
  v_cron oid;
  v_now timestamptz := now();
  v_timezone text := 'UTC';
  v_job spectrum.cron_job_state;
  v_due timestamptz;
begin
  problems := '{}';
  unchecked := '{}';
  checked := 0;
  -- pg_cron's settings are for superusers: applySchedule recorded where its jobs are.
  select count(*), min(cron_database) into expected, v_crondb from spectrum.scheduled_jobs;
  if expected = 0 then
    unchecked := unchecked || 'jobs: none expected (spectrum.scheduled_jobs is empty): no pg_cron schedule was applied to this database; npm run migrate applies sql/schedule.json'::text;
    return;
  end if;
  -- The extension's own schema is where CREATE EXTENSION ran; its tables are in schema cron.
  select n.oid into v_cron from pg_namespace n
   where n.nspname = 'cron' and exists (select from pg_extension e where e.extname = 'pg_cron');
  if v_cron is null and v_crondb is distinct from current_database() then
    unchecked := unchecked || format('jobs: pg_cron keeps its jobs in database %s (cron.database_name), which this database cannot read: the %s jobs of spectrum.scheduled_jobs are not checked; check cron.job and cron.job_run_details there',
                                     v_crondb, expected);
    return;
  elsif v_cron is null then
    problems := problems || format('jobs: CREATE EXTENSION pg_cron was not run in this database (cron.database_name), so the %s jobs of spectrum.scheduled_jobs do not run', expected);
    return;
  end if;
  -- pg_cron's row security shows each user its own jobs: health's owner needs a policy of its own.
  if not has_schema_privilege(v_cron, 'usage')
     or not (exists (select from pg_policy p, unnest(p.polroles) g(role)
                      where p.polrelid = format('%I.job', v_cron::regnamespace)::regclass
                        and g.role <> 0 and pg_has_role(g.role, 'usage'))
             or exists (select from pg_roles where rolname = current_user and (rolsuper or rolbypassrls))) then
    unchecked := unchecked || format('jobs: cron.job is in this database but row security hides its rows from %s, the owner of spectrum.health: the %s jobs of spectrum.scheduled_jobs are not checked; apply the schedule (npm run migrate) as the owner of pg_cron',
                                     current_user, expected);
    return;
  end if;
  begin
    v_timezone := coalesce(current_setting('cron.timezone', true), 'UTC');
  exception when insufficient_privilege then
    null; -- pg_cron 1.5 and later may hide it; before 1.5 schedules are in UTC
  end;

  -- Dynamic: the schema exists only in pg_cron's database.
  for v_job in execute format($q$
      select s.name, s.schedule as want_schedule, s.command as want_command, s.applied_at,
             j.jobid, j.schedule, j.command, j.active,
             l.status as last_status, l.start_time as last_start,
             f.status as finished_status, f.start_time as finished_start, f.return_message
        from spectrum.scheduled_jobs s
        left join lateral (select * from %1$I.job j
                            where j.jobname = s.name and j.database = pg_catalog.current_database()
                            order by j.active desc, j.jobid limit 1) j on true
        left join lateral (select d.status, d.start_time from %1$I.job_run_details d
                            where d.jobid = j.jobid order by d.runid desc limit 1) l on true
        left join lateral (select d.status, d.start_time, d.return_message from %1$I.job_run_details d
                            where d.jobid = j.jobid and d.status in ('succeeded', 'failed')
                            order by d.runid desc limit 1) f on true
       order by s.name$q$, v_cron::regnamespace)
  loop
    checked := checked + 1;
    if v_job.jobid is null then
      problems := problems || format('job %s: not in cron.job for this database (expected since %s): npm run migrate schedules it again',
                                     v_job.name, date_trunc('second', v_job.applied_at));
      continue;
    end if;
    if not v_job.active then
      problems := problems || format('job %s: inactive (cron.job.active is false): select cron.alter_job(%s, active => true)',
                                     v_job.name, v_job.jobid);
      continue;
    end if;
    if (v_job.schedule, v_job.command) is distinct from (v_job.want_schedule, v_job.want_command) then
      problems := problems || format('job %s: cron.job runs %L on %L, not %L on %L as sql/schedule.json was applied: npm run migrate restores it',
                                     v_job.name, v_job.command, v_job.schedule, v_job.want_command, v_job.want_schedule);
    end if;
    if v_job.finished_status = 'failed' then
      problems := problems || format('job %s: its last run, started %s, failed: %s',
                                     v_job.name, date_trunc('second', v_job.finished_start), coalesce(v_job.return_message, '(no message)'));
    end if;
    continue when v_job.last_status in ('starting', 'running');
    v_due := spectrum.cron_previous_run(v_job.schedule, v_now - p_late_after, v_timezone);
    if v_due is null then
      unchecked := unchecked || format('job %s: schedule %L not understood: whether it runs late is not checked', v_job.name, v_job.schedule);
    elsif v_due > v_job.applied_at and (v_job.last_start is null or v_job.last_start < v_due) then
      problems := problems || format('job %s: late: its schedule %L named %s, more than %s ago, and it has not started since %s',
                                     v_job.name, v_job.schedule, date_trunc('second', v_due), p_late_after,
                                     coalesce(date_trunc('second', v_job.last_start)::text,
                                              format('it was applied at %s (no run in cron.job_run_details: is pg_cron loaded, is cron.log_run on?)',
                                                     date_trunc('second', v_job.applied_at))));
    end if;
  end loop;
end
$$;

comment on function spectrum.job_problems(interval) is
  'spectrum.health''s check of the jobs of spectrum.scheduled_jobs in cron.job and cron.job_run_details: how many are expected and were checked, the problems, and what could not be checked.';

revoke all on function spectrum.job_problems(interval) from public;
grant execute on function spectrum.job_problems(interval) to spectrum_definer;

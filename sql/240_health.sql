/*
 * health: the one row an alert polls; ok is false on a stale backlog (default: two ticks), too many
 * failures in the last hour, a last run that died (unfinished past p_run_timeout), a scheduled
 * job in trouble (spectrum.job_problems), next month's fact partition missing, or old fact
 * partitions that retention could not detach. What it cannot check it says in unchecked.
 * Security definer, owned by spectrum_definer, so every caller gets the same answer: an operator
 * cannot read cron.job, which applySchedule lets spectrum_definer read.
 */
do $$
declare
  v_shape constant text := 'ok boolean, problems text[], unchecked text[], checked_at timestamp with time zone, backlog bigint, '
    || 'oldest_pending_at timestamp with time zone, oldest_pending_age interval, backlog_stale boolean, '
    || 'processed_last_hour bigint, failed_last_hour bigint, failure_rate numeric, last_run_id bigint, '
    || 'last_run_started_at timestamp with time zone, last_run_finished_at timestamp with time zone, '
    || 'last_run_finished boolean, last_success_at timestamp with time zone, jobs_expected integer, '
    || 'jobs_checked integer, next_fact_partition text, next_fact_partition_exists boolean, '
    || 'fact_retention_months integer, fact_partitions_overdue integer';
begin
  -- An earlier shape of the type is replaced (with the function, recreated below).
  if to_regtype('spectrum.health_report') is not null
     and (select pg_catalog.string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum)
            from pg_catalog.pg_attribute a
           where a.attrelid = (select typrelid from pg_catalog.pg_type where oid = to_regtype('spectrum.health_report'))
             and a.attnum > 0 and not a.attisdropped) is distinct from v_shape then
    drop type spectrum.health_report cascade;
  end if;
  if to_regtype('spectrum.health_report') is null then
    execute 'create type spectrum.health_report as (' || v_shape || ')';
  end if;
end
$$;

comment on type spectrum.health_report is 'What spectrum.health() returns: ok, problems and what could not be checked, then the measures they come from.';

-- The signature of the first release (the type's cascade drops it too, when its shape changed).
drop function if exists spectrum.health(interval, numeric, interval);

create or replace function spectrum.health(
  p_stale_after interval default '10 minutes',
  p_max_failure_rate numeric default 0.05,
  p_run_timeout interval default '10 minutes',
  p_job_late_after interval default '10 minutes'
)
returns spectrum.health_report
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  r spectrum.health_report;
  v_last spectrum.pipeline_runs;
  v_jobs record;
  v_month timestamptz;
  v_keep_from timestamptz;
  v_oldest regclass;
  v_maintenance_run bigint;
  v_maintenance_overdue integer;
  v_maintenance_note text;
begin
  r.checked_at := now();
  r.problems := '{}';
  r.unchecked := '{}';

  select count(*), min(received_at)
    into r.backlog, r.oldest_pending_at
    from spectrum.raw_events
   where id >= (select f.floor from spectrum.pending_floor f order by f.floor limit 1)
     and status = 'pending';
  r.oldest_pending_age := r.checked_at - r.oldest_pending_at;
  r.backlog_stale := coalesce(r.oldest_pending_age > p_stale_after, false);
  if r.backlog_stale then
    r.problems := r.problems || format('backlog: %s events pending, the oldest received %s ago (more than %s)',
                                       r.backlog, date_trunc('second', r.oldest_pending_age), p_stale_after);
  end if;

  select coalesce(sum(done + failed), 0), coalesce(sum(failed), 0)
    into r.processed_last_hour, r.failed_last_hour
    from spectrum.pipeline_runs
   where started_at >= r.checked_at - interval '1 hour';
  r.failure_rate := round(r.failed_last_hour::numeric / nullif(r.processed_last_hour, 0), 4);
  if r.failure_rate > p_max_failure_rate then
    r.problems := r.problems || format('failures: %s of %s events processed in the last hour failed (%s%%, above %s%%): see spectrum.failure_reasons',
                                       r.failed_last_hour, r.processed_last_hour, round(r.failure_rate * 100, 1), round(p_max_failure_rate * 100, 1));
  end if;

  select * into v_last from spectrum.pipeline_runs order by started_at desc, run_id desc limit 1;
  r.last_run_id := v_last.run_id;
  r.last_run_started_at := v_last.started_at;
  r.last_run_finished_at := v_last.finished_at;
  r.last_run_finished := v_last.finished_at is not null;
  select finished_at into r.last_success_at
    from spectrum.pipeline_runs
   where finished_at is not null
   order by started_at desc
   limit 1;
  if v_last.run_id is not null and v_last.finished_at is null and v_last.started_at < r.checked_at - p_run_timeout then
    r.problems := r.problems || format('last run: run %s started at %s and has not finished (it died: see cron.job_run_details and the server log)',
                                       v_last.run_id, date_trunc('second', v_last.started_at));
  end if;

  v_jobs := spectrum.job_problems(p_job_late_after);
  r.problems := r.problems || v_jobs.problems;
  r.unchecked := r.unchecked || v_jobs.unchecked;
  r.jobs_expected := v_jobs.expected;
  r.jobs_checked := v_jobs.checked;

  -- Batches create a partition they need, but under a lock wait; maintenance makes them ahead.
  v_month := (date_trunc('month', r.checked_at at time zone 'UTC') + interval '1 month') at time zone 'UTC';
  r.next_fact_partition := spectrum.fact_partition_name(v_month);
  r.next_fact_partition_exists := spectrum.missing_fact_partitions(array[v_month]) is null;
  if not r.next_fact_partition_exists then
    r.problems := r.problems || format('partitions: spectrum.%s, for next month''s facts, does not exist: CALL spectrum.maintenance() creates it (is its job running?)',
                                       r.next_fact_partition);
  end if;

  select fact_retention_months into r.fact_retention_months from spectrum.settings;
  if r.fact_retention_months is not null then
    v_keep_from := (date_trunc('month', r.checked_at at time zone 'UTC') - make_interval(months => r.fact_retention_months)) at time zone 'UTC';
    select count(*), (array_agg(p.partition order by p.range_from))[1] into r.fact_partitions_overdue, v_oldest
      from spectrum.fact_partition_ranges() p
     where p.range_to <= v_keep_from;
    -- Only once a maintenance run has tried: a retention just set waits for the next run.
    select run_id, partitions_overdue, note into v_maintenance_run, v_maintenance_overdue, v_maintenance_note
      from spectrum.maintenance_runs
     where finished_at is not null order by started_at desc limit 1;
    if r.fact_partitions_overdue > 0 and v_maintenance_overdue > 0 then
      r.problems := r.problems || format('retention: %s fact partitions hold facts older than fact_retention_months (%s), the oldest %s; maintenance run %s could not detach them: %s',
                                         r.fact_partitions_overdue, r.fact_retention_months, v_oldest, v_maintenance_run,
                                         coalesce(v_maintenance_note, 'see spectrum.maintenance_runs'));
    end if;
  end if;

  r.ok := cardinality(r.problems) = 0;
  return r;
end
$$;

alter function spectrum.health(interval, numeric, interval, interval) owner to spectrum_definer;

comment on function spectrum.health(interval, numeric, interval, interval) is
  'One row for an alert to poll: ok, problems (stale backlog older than p_stale_after, failure rate of the last hour above p_max_failure_rate, a last run that did not finish within p_run_timeout, a scheduled job missing, inactive, failing or not started within p_job_late_after of its time, next month''s fact partition missing, old fact partitions maintenance could not detach), what it could not check, and the measures behind them.';

revoke all on function spectrum.health(interval, numeric, interval, interval) from public;
grant execute on function spectrum.health(interval, numeric, interval, interval) to spectrum_operator;

-- What the definer reads besides the tables of 240..259, which grant it themselves.
grant select on spectrum.pipeline_runs to spectrum_definer;
grant execute on function spectrum.fact_partition_name(timestamptz) to spectrum_definer;
grant execute on function spectrum.missing_fact_partitions(timestamptz[]) to spectrum_definer;

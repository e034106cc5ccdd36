/*
 * health: the one row an alert polls; ok is false on a stale backlog (default: two ticks), too many
 * failures in the last hour, or a last run that died (unfinished past p_run_timeout).
 */
do $$
declare
  v_shape constant text := 'ok boolean, problems text[], checked_at timestamp with time zone, backlog bigint, '
    || 'oldest_pending_at timestamp with time zone, oldest_pending_age interval, backlog_stale boolean, '
    || 'processed_last_hour bigint, failed_last_hour bigint, failure_rate numeric, last_run_id bigint, '
    || 'last_run_started_at timestamp with time zone, last_run_finished_at timestamp with time zone, '
    || 'last_run_finished boolean, last_success_at timestamp with time zone';
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

comment on type spectrum.health_report is 'What spectrum.health() returns: ok and problems, then the measures they come from.';

create or replace function spectrum.health(
  p_stale_after interval default '10 minutes',
  p_max_failure_rate numeric default 0.05,
  p_run_timeout interval default '10 minutes'
)
returns spectrum.health_report
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  r spectrum.health_report;
  v_last spectrum.pipeline_runs;
begin
  r.checked_at := now();
  r.problems := '{}';

  select count(*), min(received_at)
    into r.backlog, r.oldest_pending_at
    from spectrum.raw_events
   where status = 'pending';
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

  r.ok := cardinality(r.problems) = 0;
  return r;
end
$$;

comment on function spectrum.health(interval, numeric, interval) is
  'One row for an alert to poll: ok, problems (stale backlog older than p_stale_after, failure rate of the last hour above p_max_failure_rate, a last run that did not finish within p_run_timeout), and the measures behind them.';

grant execute on function spectrum.health(interval, numeric, interval) to spectrum_operator;

revoke all on function spectrum.health(interval, numeric, interval) from public;

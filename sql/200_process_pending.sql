/*
 * process_pending: the pipeline, CALLed by pg_cron each tick or by an operator, concurrently too
 * (claims skip locked rows). One transaction per batch: a crash loses only the batch in flight,
 * whose rows stay pending. It commits, so CALL it outside a transaction block.
 */
create or replace procedure spectrum.process_pending(
  p_batch_size integer default 20000,
  p_time_budget interval default '3 minutes',
  p_max_batches integer default null,
  p_max_attempts integer default 5
)
language plpgsql
as $$
declare
  v_run_id bigint;
  v_started timestamptz := clock_timestamp();
  v_batch_started timestamptz;
  v_finished timestamptz;
  v_last_batch interval := interval '0';
  v_ids uuid[];
  v_errored uuid[] := '{}';
  v_errored_before uuid[];
  v_result spectrum.batch_result;
  v_state text;
  v_message text;
  v_batches integer := 0;
  v_partition_rounds integer := 0;
  v_stop text := 'no pending rows';
  v_bucket integer;
  v_after uuid;
  v_after_before uuid;
begin
  if p_batch_size is null or p_batch_size < 1 then
    raise exception 'p_batch_size must be a positive integer, got %', p_batch_size
      using hint = 'Call it as CALL spectrum.process_pending(p_batch_size => 20000).', errcode = '22023';
  end if;
  if p_time_budget is null or p_time_budget <= interval '0' then
    raise exception 'p_time_budget must be a positive interval, got %', p_time_budget
      using hint = 'Call it as CALL spectrum.process_pending(p_time_budget => ''3 minutes'').', errcode = '22023';
  end if;
  if p_max_attempts is null or p_max_attempts < 1 then
    raise exception 'p_max_attempts must be a positive integer, got %', p_max_attempts
      using hint = 'Call it as CALL spectrum.process_pending(p_max_attempts => 5).', errcode = '22023';
  end if;

  insert into spectrum.pipeline_runs (started_at) values (v_started) returning run_id into v_run_id;
  -- Raise the pending floors before claiming (see 022_pending_floor.sql); again at the end.
  for v_bucket in select f.bucket from spectrum.pending_floor f order by f.bucket loop
    perform spectrum.advance_pending_floor(v_bucket);
  end loop;
  -- The pipeline never commits 'processing' (a claim is row locks): such rows were left by hand,
  -- and none stays so past this call. None is below the floor (the status trigger sees to it).
  if exists (select from spectrum.raw_buckets) then
    -- Citus refuses FOR UPDATE across shards; nothing else holds such rows for long.
    update spectrum.raw_events
       set status = 'pending'
     where id >= (select f.floor from spectrum.pending_floor f order by f.floor limit 1)
       and status = 'processing';
  else
    -- citus: single server only
    update spectrum.raw_events
       set status = 'pending'
     where id in (select r.id from spectrum.raw_events r
                   where r.id >= (select f.floor from spectrum.pending_floor f where f.bucket = 0)
                     and r.status = 'processing'
                     for update skip locked);
  end if;
  commit;

  loop
    if p_max_batches is not null and v_batches >= p_max_batches then
      v_stop := 'batch limit';
      exit;
    end if;
    if clock_timestamp() - v_started + v_last_batch > p_time_budget then
      v_stop := 'time budget';
      exit;
    end if;
    v_batch_started := clock_timestamp();

    v_errored_before := v_errored;
    v_after_before := v_after;
    v_ids := spectrum.claim_pending(p_batch_size, v_errored, v_after);
    exit when pg_catalog.cardinality(v_ids) = 0;
    -- The next claim starts here: rows below are finished, locked by another call or excluded.
    v_after := (select i from pg_catalog.unnest(v_ids) i order by i desc limit 1);

    begin
      v_result := spectrum.process_claimed(v_ids, clock_timestamp());
    exception when others or query_canceled then
      get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
      -- Citus cancels the victim of a distributed deadlock (57014): contention, not a cancel.
      -- Inside PL/pgSQL its message is a plain cancel's (Citus rewords it only for the client),
      -- so on Citus every cancel of a batch counts as contention and ends the call after it.
      if v_state = '57014' then
        if v_message not like '%distributed deadlock%'
           and not exists (select from spectrum.raw_buckets) then
          raise;
        end if;
        v_state := '40P01';
      end if;
      if v_state like '53%' or v_state like '58%' then
        -- Out of disk, memory or connections, or an I/O error: the server's trouble, not the
        -- rows'. Nothing counts against them (no bisecting, no attempt); the call ends.
        raise warning 'spectrum.process_pending: stopped by % (%); the batch stays pending', v_state, v_message;
        v_stop := 'server resources';
        exit;
      end if;
      v_result := spectrum.record_unexpected_error(v_ids, v_state, v_message, p_max_attempts,
                                                 p_deadline => v_started + p_time_budget);
      v_errored := pg_catalog.array_cat(v_errored, array(select id from spectrum.raw_events where id = any (v_ids) and status = 'pending'));
    end;

    if v_result.missing_months is not null then
      -- No partition DDL under row locks: undo the batch, create them on their own, claim again.
      rollback;
      v_errored := v_errored_before;
      v_after := v_after_before;
      v_partition_rounds := v_partition_rounds + 1;
      if v_partition_rounds > 3 then
        raise exception 'fact partitions for % are still missing after creating them', v_result.missing_months
          using hint = 'Check that spectrum.ensure_fact_partitions can create tables in schema spectrum.', errcode = '55000';
      end if;
      begin
        perform spectrum.ensure_fact_partitions(v_result.missing_months);
      exception when lock_not_available then
        v_stop := 'contention';
        exit;
      end;
      commit;
      continue;
    end if;
    v_partition_rounds := 0;
    v_batches := v_batches + 1;

    update spectrum.pipeline_runs
       set batches = batches + 1,
           claimed = claimed + pg_catalog.cardinality(v_ids),
           done = done + v_result.done,
           failed = failed + v_result.failed,
           retried = retried + v_result.retried,
           superseded = superseded + v_result.superseded
     where run_id = v_run_id;
    -- Includes record_unexpected_error's failures; lock order, id_floor: see 031_status_totals.sql.
    update spectrum.status_totals t
       set events = t.events + case t.status when 'done' then v_result.done else v_result.failed end,
           id_floor = case when t.status = 'done' and v_result.done > 0
                           then least(t.id_floor, (select i from pg_catalog.unnest(v_ids) i order by i limit 1))
                           else t.id_floor end
      from (select s.status from spectrum.status_totals s
             where s.status in ('done', 'failed') order by s.status for update) l
     where t.status = l.status;
    commit;
    v_last_batch := clock_timestamp() - v_batch_started;

    if v_state in ('40P01', '40001', '55P03') then
      v_stop := 'contention';
      exit;
    end if;
    v_state := null;
  end loop;

  for v_bucket in select f.bucket from spectrum.pending_floor f order by f.bucket loop
    perform spectrum.advance_pending_floor(v_bucket);
  end loop;
  -- A value, not clock_timestamp() in the UPDATE: Citus refuses volatile functions there.
  v_finished := clock_timestamp();
  update spectrum.pipeline_runs
     set finished_at = v_finished, stopped_because = v_stop
   where run_id = v_run_id;
  commit;
end
$$;

comment on procedure spectrum.process_pending(integer, interval, integer, integer) is
  'Processes pending raw_events in batches of p_batch_size (default 20000), each committed on its own, until none is pending or p_time_budget (default 3 minutes) would be exceeded. Safe to call concurrently. CALL it outside a transaction block.';

revoke all on procedure spectrum.process_pending(integer, interval, integer, integer) from public;

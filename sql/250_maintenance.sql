/*
 * maintenance: the hourly housekeeping, run by the pg_cron job spectrum.maintenance (see
 * sql/schedule.json) or by hand: `CALL spectrum.maintenance();`. Nobody but the owner may run
 * it. Must be CALLed outside a transaction block (it commits between steps and chunks).
 *   1. Creates the fact partitions of the current month and p_months_ahead months ahead, so
 *      the pipeline rarely has to create one itself. When the attach times out behind running
 *      batches' dimension upserts (ensure_fact_partitions), it says so in the note and the
 *      next run retries; the other steps go on.
 *   2. Retention: deletes done raw rows received longer ago than p_retention, in committed
 *      chunks of p_batch rows, in id order. Old rows are found by id range: time-ordered ids
 *      below spectrum.uuid_v7(cutoff), ids that are not (gen_random_uuid, an import) above
 *      uuid_v7(now + 1 day). Rows are locked with FOR UPDATE SKIP LOCKED, so it never waits
 *      for a producer, a pipeline batch or a reprocess, and each chunk's locks last one short
 *      transaction. Failed and pending rows are kept. The done counter follows through the
 *      raw_events delete trigger. event_index is kept whole: it is what makes a late retry
 *      of an old event replace its fact instead of adding one.
 *   3. Prunes cron.job_run_details (and spectrum.maintenance_runs) older than p_cron_history,
 *      when pg_cron's tables are in this database; when pg_cron lives in another database of
 *      the cluster it says so (NOTICE) and leaves them alone.
 *   4. Raises the done id_floor of spectrum.status_totals to the first done row (what keeps
 *      spectrum.pipeline_status from walking past old failed rows).
 * One run at a time: every transaction of a run (each step and chunk commits) first takes a
 * transaction-level advisory lock; a call that does not get it returns at once with a NOTICE.
 * Never a session lock: one left behind by a run that raised in a psql session would make
 * every later call stand down.
 * Records what it did in spectrum.maintenance_runs and in a closing NOTICE.
 */
create or replace procedure spectrum.maintenance(
  p_months_ahead integer default 3,
  p_retention interval default '90 days',
  p_cron_history interval default '7 days',
  p_batch integer default 10000
)
language plpgsql
as $$
declare
  v_lock constant bigint := pg_catalog.hashtext('spectrum.maintenance')::bigint;
  v_holder integer;
  v_taken_over boolean := false;
  v_run_id bigint;
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_created integer;
  v_cutoff timestamptz;
  v_range integer;
  v_from uuid;
  v_to uuid;
  v_ids uuid[];
  v_floor uuid;
  v_first uuid;
  v_n bigint;
  v_deleted bigint := 0;
  v_pruned bigint;
  v_note text;
  v_cron_note text;
  v_cron oid;
begin
  if p_months_ahead is null or p_months_ahead not between 0 and 120 then
    raise exception 'p_months_ahead must be from 0 to 120, got %', p_months_ahead
      using hint = 'Call it as CALL spectrum.maintenance(p_months_ahead => 3).', errcode = '22023';
  end if;
  if p_retention is null or p_retention <= interval '0' then
    raise exception 'p_retention must be a positive interval, got %', p_retention
      using hint = 'Call it as CALL spectrum.maintenance(p_retention => ''90 days'').', errcode = '22023';
  end if;
  if p_cron_history is null or p_cron_history < interval '0' then
    raise exception 'p_cron_history must be an interval of zero or more, got %', p_cron_history
      using hint = 'Call it as CALL spectrum.maintenance(p_cron_history => ''7 days'').', errcode = '22023';
  end if;
  if p_batch is null or p_batch < 1 then
    raise exception 'p_batch must be a positive integer, got %', p_batch
      using hint = 'Call it as CALL spectrum.maintenance(p_batch => 10000).', errcode = '22023';
  end if;

  -- One run at a time. Not a session lock: a session lock outlives an error in the session
  -- that raised (psql keeps the session), and every later call would then stand down for
  -- good. Each transaction of the run (the procedure commits between steps and chunks) takes
  -- the transaction lock instead, which ends with the transaction whatever happens.
  if not pg_catalog.pg_try_advisory_xact_lock(v_lock) then
    select l.pid into v_holder
      from pg_catalog.pg_locks l
     where l.locktype = 'advisory' and l.granted and l.objsubid = 1
       and l.database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())
       and l.classid = ((v_lock >> 32) & 4294967295)::oid and l.objid = (v_lock & 4294967295)::oid
     limit 1;
    raise notice 'spectrum.maintenance: another maintenance is running (backend pid %): nothing done', v_holder;
    return;
  end if;

  insert into spectrum.maintenance_runs (started_at) values (v_now) returning run_id into v_run_id;

  -- 1. Fact partitions: this month and p_months_ahead more (UTC months). An attach that waited
  -- its lock timeout for running batches' dimension upserts is left to the next run (the months
  -- ahead leave time); retention goes on regardless.
  begin
    v_created := spectrum.ensure_fact_partitions(array(
      select (pg_catalog.date_trunc('month', v_now at time zone 'UTC') + pg_catalog.make_interval(months => m)) at time zone 'UTC'
        from pg_catalog.generate_series(0, p_months_ahead) m));
  exception when lock_not_available then
    v_created := 0;
    v_note := 'fact partitions not created: a lock wait timed out behind running pipeline batches (the next run retries)';
    raise notice 'spectrum.maintenance: %', v_note;
  end;
  update spectrum.maintenance_runs set partitions_created = v_created, note = v_note where run_id = v_run_id;
  commit;

  -- 2. Retention of done raw rows, chunk by chunk, keyset on id (no chunk rescans the rows
  -- the previous ones kept), in two id ranges. Time-ordered ids received before the cutoff
  -- sort below uuid_v7(cutoff). Ids that are not time-ordered (gen_random_uuid, imports) sort
  -- anywhere: almost all of them above uuid_v7(now + 1 day), a range no time-ordered id
  -- reaches (empty, so free, when there are none); the few that fall between the two bounds
  -- are never found (see the README). Each chunk is a transaction that takes the run lock
  -- anew; the last one (which finds nothing) holds it on through step 3.
  v_cutoff := v_now - p_retention;
  <<ranges>>
  for v_range in 1..2 loop
    if v_range = 1 then
      v_from := '00000000-0000-0000-0000-000000000000';
      v_to := spectrum.uuid_v7(v_cutoff);
    else
      v_from := spectrum.uuid_v7(v_now + interval '1 day');
      v_to := 'ffffffff-ffff-ffff-ffff-ffffffffffff';
    end if;
    loop
      v_taken_over := not pg_catalog.pg_try_advisory_xact_lock(v_lock);
      exit ranges when v_taken_over;
      select pg_catalog.array_agg(id order by id)
        into v_ids
        from (select id
                from spectrum.raw_events
               where id >= v_from and id <= v_to
                 and status = 'done' and received_at < v_cutoff
               order by id
               limit p_batch
                 for update skip locked) doomed;
      exit when v_ids is null;
      delete from spectrum.raw_events where id = any (v_ids);
      get diagnostics v_n = row_count;
      v_deleted := v_deleted + v_n;
      -- Inclusive: that row is gone now, and the range's first bound must be inclusive too.
      v_from := v_ids[pg_catalog.cardinality(v_ids)];
      update spectrum.maintenance_runs set raw_deleted = v_deleted where run_id = v_run_id;
      commit;
    end loop;
  end loop;

  if v_taken_over then
    -- Another call got the lock between two of this run's transactions: it does the rest.
    update spectrum.maintenance_runs
       set finished_at = pg_catalog.clock_timestamp(),
           note = pg_catalog.concat_ws('; ', v_note, 'stopped during retention: another maintenance run took over')
     where run_id = v_run_id;
    commit;
    raise notice 'spectrum.maintenance: another maintenance run took over: stopped after % fact partitions created, % done raw rows deleted',
      v_created, v_deleted;
    return;
  end if;

  -- 3. Run history.
  select n.oid into v_cron from pg_catalog.pg_namespace n where n.nspname = 'cron';
  if v_cron is null or not pg_catalog.has_schema_privilege(v_cron, 'usage') then
    v_cron_note := 'cron.job_run_details is not in this database (pg_cron runs from database '
                   || coalesce(pg_catalog.current_setting('cron.database_name', true), '?')
                   || '): prune it there';
    raise notice 'spectrum.maintenance: %', v_cron_note;
  elsif not coalesce(pg_catalog.has_table_privilege(pg_catalog.to_regclass('cron.job_run_details'), 'delete'), false) then
    v_cron_note := 'no delete privilege on cron.job_run_details: not pruned';
    raise notice 'spectrum.maintenance: %', v_cron_note;
  else
    -- Dynamic: the table exists only in pg_cron's database.
    execute pg_catalog.format('delete from %s.job_run_details where coalesce(end_time, start_time) < $1', v_cron::regnamespace)
      using v_now - p_cron_history;
    get diagnostics v_pruned = row_count;
  end if;
  delete from spectrum.maintenance_runs where started_at < v_now - p_cron_history;

  -- 4. The done id_floor of status_totals up to the first done row, so that pipeline_status
  -- starts its search past the old failed rows that retention keeps. Under the counter row's
  -- lock, taken last and held only to the commit: a batch (or trigger) that made a lower row
  -- done has either committed, and the search sees the row, or lowers the floor after this.
  select id_floor into v_floor from spectrum.status_totals where status = 'done' for update;
  if found then
    select id into v_first from spectrum.raw_events where status = 'done' and id >= v_floor order by id limit 1;
    if v_first > v_floor then
      update spectrum.status_totals set id_floor = v_first where status = 'done';
    end if;
  end if;

  update spectrum.maintenance_runs
     set finished_at = pg_catalog.clock_timestamp(), cron_details_deleted = v_pruned,
         note = nullif(pg_catalog.concat_ws('; ', v_note, v_cron_note), '')
   where run_id = v_run_id;
  commit;
  raise notice 'spectrum.maintenance: % fact partitions created, % done raw rows received before % deleted, % cron.job_run_details rows pruned',
    v_created, v_deleted, v_cutoff, coalesce(v_pruned::text, 'no');
end
$$;

comment on procedure spectrum.maintenance(integer, interval, interval, integer) is
  'Hourly housekeeping: creates fact partitions p_months_ahead (default 3) months ahead, deletes done raw rows older than p_retention (default 90 days) in committed chunks of p_batch without blocking anyone (failed rows are kept), prunes cron.job_run_details older than p_cron_history (default 7 days) when pg_cron is in this database. One run at a time; records each run in spectrum.maintenance_runs. CALL it outside a transaction block.';

revoke all on procedure spectrum.maintenance(integer, interval, interval, integer) from public;

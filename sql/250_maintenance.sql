/*
 * maintenance: the hourly housekeeping (fact partitions ahead, retention, run history, the done
 * id_floor), CALLed by the pg_cron job of schedule.json or by its owner. It commits between
 * steps and chunks, so CALL it outside a transaction block; one run at a time.
 */
create or replace procedure spectrum.maintenance(
  p_months_ahead integer default 3,
  p_retention interval default '90 days',
  p_cron_history interval default '7 days',
  p_batch_size integer default 10000
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
  if p_batch_size is null or p_batch_size < 1 then
    raise exception 'p_batch_size must be a positive integer, got %', p_batch_size
      using hint = 'Call it as CALL spectrum.maintenance(p_batch_size => 10000).', errcode = '22023';
  end if;

  -- Taken by each transaction of the run: a session lock would outlive an error in psql, and
  -- every later call would stand down for good.
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

  -- 1. Fact partitions: a lock timeout (see 122_ensure_fact_partitions.sql) leaves them to the
  -- next run.
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

  -- 2. Retention of done rows, keyset on id, in two ranges: time-ordered ids below
  -- uuid_v7(cutoff), other ids (gen_random_uuid, imports) above uuid_v7(now + 1 day), where no
  -- time-ordered id is; the few between are never found. event_registry is kept whole: a late
  -- retry of an old event must replace its fact, not add one.
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
               limit p_batch_size
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
    update spectrum.maintenance_runs
       set finished_at = pg_catalog.clock_timestamp(),
           note = pg_catalog.concat_ws('; ', v_note, 'stopped during retention: another maintenance run took over')
     where run_id = v_run_id;
    commit;
    raise notice 'spectrum.maintenance: another maintenance run took over: stopped after % fact partitions created, % done raw rows deleted',
      v_created, v_deleted;
    return;
  end if;

  -- 3. Run history (the last retention transaction still holds the run lock).
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

  -- 4. Raise the done id_floor (see 031_status_totals.sql) under the counter row's lock: a batch
  -- that made a lower row done has committed, so the search sees it, or lowers the floor after.
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
  'Hourly housekeeping: creates fact partitions p_months_ahead (default 3) months ahead, deletes done raw rows older than p_retention (default 90 days) in committed chunks of p_batch_size without blocking anyone (failed rows are kept), prunes cron.job_run_details older than p_cron_history (default 7 days) when pg_cron is in this database. One run at a time; records each run in spectrum.maintenance_runs. CALL it outside a transaction block.';

revoke all on procedure spectrum.maintenance(integer, interval, interval, integer) from public;

/*
 * maintenance: the hourly housekeeping (fact partitions ahead, fact partition retention, raw
 * retention, run history, the done id_floor), CALLed by the pg_cron job of schedule.json or by
 * its owner. It commits between steps and chunks, so CALL it outside a transaction block; one
 * run at a time. Fact retention is read from spectrum.settings (off by default).
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
  v_bucket integer;
  v_counted boolean;
  v_finished timestamptz;
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
  v_keep_months integer;
  v_drop_after interval;
  v_keep_from timestamptz;
  v_part regclass;
  v_part_from timestamptz;
  v_part_to timestamptz;
  v_table text;
  v_detached integer := 0;
  v_dropped integer := 0;
  v_overdue integer;
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

  -- 2. Fact retention: partitions wholly before this month minus fact_retention_months are
  -- detached and renamed (the pipeline creates the partition again for a late event of that
  -- month, under the usual name), then dropped fact_drop_after later. DETACH and DROP lock
  -- fact_events or the dimensions exclusively, so they wait behind running batches, which wait
  -- behind them: lock_timeout bounds that, and what is busy is left to the next run.
  select fact_retention_months, fact_drop_after into v_keep_months, v_drop_after from spectrum.settings;
  if v_keep_months is not null then
    v_keep_from := (pg_catalog.date_trunc('month', v_now at time zone 'UTC')
                    - pg_catalog.make_interval(months => v_keep_months)) at time zone 'UTC';
    for v_part, v_part_from, v_part_to in
      select r.partition, r.range_from, r.range_to from spectrum.fact_partition_ranges() r where r.range_to <= v_keep_from
    loop
      v_taken_over := not pg_catalog.pg_try_advisory_xact_lock(v_lock);
      exit when v_taken_over;
      select pg_catalog.left(c.relname, 31) || '_detached_' || pg_catalog.to_char(v_now at time zone 'UTC', 'YYYYMMDD_HH24MISS_US')
        into v_table
        from pg_catalog.pg_class c where c.oid = v_part;
      begin
        perform pg_catalog.set_config('lock_timeout', '5s', true);
        execute pg_catalog.format('alter table spectrum.fact_events detach partition %s', v_part);
        execute pg_catalog.format('alter table %s rename to %I', v_part, v_table);
        execute pg_catalog.format('comment on table spectrum.%I is %L', v_table, pg_catalog.format(
          'Facts that occurred in %s (UTC), detached from spectrum.fact_events by spectrum.maintenance (settings.fact_retention_months); dropped after settings.fact_drop_after.',
          pg_catalog.to_char(v_part_from at time zone 'UTC', 'YYYY-MM')));
        insert into spectrum.detached_fact_partitions (table_name, range_from, range_to, detached_at)
        values (v_table, v_part_from, v_part_to, v_now);
        v_detached := v_detached + 1;
      exception when lock_not_available then
        v_note := pg_catalog.concat_ws('; ', v_note, pg_catalog.format(
          'fact partition %s not detached: a lock wait timed out behind running batches or readers (the next run retries)', v_part));
        raise notice 'spectrum.maintenance: fact partition % not detached: busy (the next run retries)', v_part;
        exit;
      end;
      update spectrum.maintenance_runs set partitions_detached = v_detached where run_id = v_run_id;
      commit;
    end loop;
    select pg_catalog.count(*) into v_overdue from spectrum.fact_partition_ranges() r where r.range_to <= v_keep_from;
  end if;
  if v_drop_after is not null and not v_taken_over then
    for v_table in
      select d.table_name from spectrum.detached_fact_partitions d
       where d.dropped_at is null and d.detached_at <= v_now - v_drop_after
       order by d.range_from
    loop
      v_taken_over := not pg_catalog.pg_try_advisory_xact_lock(v_lock);
      exit when v_taken_over;
      begin
        perform pg_catalog.set_config('lock_timeout', '5s', true);
        execute pg_catalog.format('drop table if exists spectrum.%I', v_table);
        update spectrum.detached_fact_partitions set dropped_at = v_now where table_name = v_table;
        v_dropped := v_dropped + 1;
      exception when lock_not_available then
        v_note := pg_catalog.concat_ws('; ', v_note, pg_catalog.format(
          'detached fact partition %s not dropped: a lock wait timed out (the next run retries)', v_table));
        raise notice 'spectrum.maintenance: detached fact partition % not dropped: busy (the next run retries)', v_table;
        exit;
      end;
      update spectrum.maintenance_runs set partitions_dropped = v_dropped where run_id = v_run_id;
      commit;
    end loop;
  end if;
  update spectrum.maintenance_runs
     set fact_retention_months = v_keep_months, partitions_overdue = v_overdue, note = v_note
   where run_id = v_run_id;
  commit;

  -- 3. Retention of done rows, keyset on id, in two ranges: time-ordered ids below
  -- uuid_v7(cutoff), other ids (gen_random_uuid, imports) above uuid_v7(now + 1 day), where no
  -- time-ordered id is; the few between are never found. event_registry is kept whole: a late
  -- retry of an old event must replace its fact, not add one.
  v_cutoff := v_now - p_retention;
  -- Without the status_totals triggers (dropped on Citus), retention subtracts what it deletes.
  v_counted := exists (select from pg_catalog.pg_trigger
                        where tgrelid = 'spectrum.raw_events'::pg_catalog.regclass
                          and tgname = 'raw_events_status_deleted');
  -- One bucket at a time: on Citus each lock is then a single-shard query (021_raw_buckets.sql).
  <<buckets>>
  for v_bucket in select f.bucket from spectrum.pending_floor f order by f.bucket loop
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
        exit buckets when v_taken_over;
        select pg_catalog.array_agg(id order by id)
          into v_ids
          from (select id
                  from spectrum.raw_events
                 where bucket = v_bucket
                   and id >= v_from and id <= v_to
                   and status = 'done' and received_at < v_cutoff
                 order by id
                 limit p_batch_size
                   for update skip locked) doomed;
        exit when v_ids is null;
        delete from spectrum.raw_events where bucket = v_bucket and id = any (v_ids);
        get diagnostics v_n = row_count;
        v_deleted := v_deleted + v_n;
        if not v_counted then
          update spectrum.status_totals set events = events - v_n where status = 'done';
        end if;
        -- Inclusive: that row is gone now, and the range's first bound must be inclusive too.
        v_from := v_ids[pg_catalog.cardinality(v_ids)];
        update spectrum.maintenance_runs set raw_deleted = v_deleted where run_id = v_run_id;
        commit;
      end loop;
    end loop;
  end loop;

  if v_taken_over then
    -- A value, not clock_timestamp() in the UPDATE: Citus refuses volatile functions there.
    v_finished := pg_catalog.clock_timestamp();
    update spectrum.maintenance_runs
       set finished_at = v_finished,
           note = pg_catalog.concat_ws('; ', v_note, 'stopped during retention: another maintenance run took over')
     where run_id = v_run_id;
    commit;
    raise notice 'spectrum.maintenance: another maintenance run took over: stopped after % fact partitions created, % done raw rows deleted',
      v_created, v_deleted;
    return;
  end if;

  -- 4. Run history (the last retention transaction still holds the run lock).
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

  -- 5. Raise the done id_floor (see 031_status_totals.sql) under the counter row's lock: a batch
  -- that made a lower row done has committed, so the search sees it, or lowers the floor after.
  select id_floor into v_floor from spectrum.status_totals where status = 'done' for update;
  if found then
    select id into v_first from spectrum.raw_events where status = 'done' and id >= v_floor order by id limit 1;
    if v_first > v_floor then
      update spectrum.status_totals set id_floor = v_first where status = 'done';
    end if;
  end if;

  v_finished := pg_catalog.clock_timestamp();
  update spectrum.maintenance_runs
     set finished_at = v_finished, cron_details_deleted = v_pruned,
         note = nullif(pg_catalog.concat_ws('; ', v_note, v_cron_note), '')
   where run_id = v_run_id;
  commit;
  raise notice 'spectrum.maintenance: % fact partitions created, % detached, % dropped, % done raw rows received before % deleted, % cron.job_run_details rows pruned',
    v_created, v_detached, v_dropped, v_deleted, v_cutoff, coalesce(v_pruned::text, 'no');
end
$$;

comment on procedure spectrum.maintenance(integer, interval, interval, integer) is
  'Hourly housekeeping: creates fact partitions p_months_ahead (default 3) months ahead, detaches fact partitions older than spectrum.settings.fact_retention_months (off by default) and drops them fact_drop_after later, deletes done raw rows older than p_retention (default 90 days) in committed chunks of p_batch_size without blocking anyone (failed rows are kept), prunes cron.job_run_details older than p_cron_history (default 7 days) when pg_cron is in this database. One run at a time; records each run in spectrum.maintenance_runs. CALL it outside a transaction block.';

revoke all on procedure spectrum.maintenance(integer, interval, interval, integer) from public;

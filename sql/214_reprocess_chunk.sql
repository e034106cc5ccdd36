/*
 * reprocess_chunk: one chunk of a reprocess run, in the caller's transaction
 * (spectrum.reprocess_in_chunks commits after each). Re-queues up to chunk_size matching rows
 * after the run's cursor, in id order, and moves the cursor past them; the rows and the cursor
 * commit together, so a run stopped anywhere resumes without resetting a row twice.
 * - Rows a pipeline batch holds are pending, which no filter matches: the UPDATE's WHERE rejects
 *   them before it would wait, and the batch interprets them. Its first chunk waits for the
 *   transactions in flight when the run started to end, so none of them (a batch running the
 *   code from before a fix) can finish a row after the cursor has passed it.
 * - Anything else holding a row or the status counters for more than the lock timeout (1 s)
 *   rolls the chunk back: timed_out, the cursor unchanged, for the caller to retry.
 * - A chunk reads at most ten chunks' worth of ids past the cursor, so sparse matches never make
 *   one statement scan far.
 * The advisory lock marks the run as running (spectrum.reprocess_progress) and keeps a second
 * session off it. Security definer, owned by spectrum_definer.
 */
create or replace function spectrum.reprocess_chunk(
  p_run_id bigint,
  p_chunk_size integer default null,
  out requeued bigint,
  out waiting integer,
  out timed_out boolean,
  out finished boolean
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '1s'
as $$
declare
  v_key integer := hashtext('spectrum.reprocess_runs');
  v_run spectrum.reprocess_runs;
  v_where text;
  v_scan_end uuid;
  v_ids uuid[];
  v_next uuid;
  v_now timestamptz;
  v_holder integer;
begin
  requeued := 0;
  waiting := 0;
  timed_out := false;
  finished := false;
  if not pg_try_advisory_xact_lock(v_key, p_run_id::integer) then
    select l.pid into v_holder
      from pg_locks l
     where l.locktype = 'advisory' and l.granted and l.objsubid = 2
       and l.database = (select oid from pg_database where datname = current_database())
       and l.classid = v_key::oid and l.objid = p_run_id::integer::oid
     limit 1;
    raise exception 'reprocess run % is being run by another session (backend pid %)', p_run_id, v_holder
      using hint = 'Let it finish, or stop it with select pg_cancel_backend(' || v_holder
                   || ') and resume it from one session.',
            errcode = '55P03';
  end if;
  select * into v_run from spectrum.reprocess_runs r where r.run_id = p_run_id for update;
  if not found then
    raise exception 'reprocess run % does not exist', p_run_id
      using hint = 'select * from spectrum.reprocess_progress lists the runs.', errcode = '22023';
  end if;
  if v_run.finished_at is not null then
    finished := true;
    return;
  end if;
  if p_chunk_size is distinct from v_run.chunk_size and p_chunk_size is not null then
    if p_chunk_size < 1 then
      raise exception 'spectrum.reprocess_in_chunks: chunk_size must be a positive integer, got %', p_chunk_size
        using hint = 'Call it as CALL spectrum.reprocess_in_chunks(run_id => ' || p_run_id
                     || ', chunk_size => 10000).',
              errcode = '22023';
    end if;
    update spectrum.reprocess_runs r set chunk_size = p_chunk_size where r.run_id = p_run_id;
    v_run.chunk_size := p_chunk_size;
  end if;

  select count(*)::integer into waiting
    from unnest(v_run.in_flight_at_start) x
   where pg_xact_status(x) = 'in progress';
  if waiting > 0 then
    perform pg_sleep(0.2);
    return;
  end if;

  v_where := spectrum.reprocess_filter('spectrum.reprocess_in_chunks', v_run.status, v_run.ids,
    v_run.received_after, v_run.received_before, v_run.event_type, v_run.account_id);
  if v_run.ids is null then
    select e.id into v_scan_end
      from spectrum.raw_events e
     where e.id > v_run.after_id
     order by e.id
    offset v_run.chunk_size * 10 - 1
     limit 1;
  end if;
  execute 'select array(select id from spectrum.raw_events where id > $7'
          || case when v_scan_end is null then '' else ' and id <= $8' end
          || ' and ' || v_where || ' order by id limit $9 + 1)'
     into v_ids
    using v_run.status, v_run.ids, v_run.received_after, v_run.received_before, v_run.event_type,
          v_run.account_id, v_run.after_id, v_scan_end, v_run.chunk_size;
  -- One id past the chunk says whether another chunk is needed.
  if cardinality(v_ids) > v_run.chunk_size then
    v_ids := v_ids[1:v_run.chunk_size];
    v_next := v_ids[v_run.chunk_size];
  elsif v_scan_end is not null then
    v_next := v_scan_end;
  else
    v_next := 'ffffffff-ffff-ffff-ffff-ffffffffffff';
    finished := true;
  end if;

  begin
    -- The filters again: a row may have changed since it was found.
    if exists (select from pg_catalog.pg_trigger
                where tgrelid = 'spectrum.raw_events'::pg_catalog.regclass
                  and tgname = 'raw_events_status_changed') then
      execute 'update spectrum.raw_events
                  set status = ''pending'', attempts = 0, error_msg = null, processed_at = null
                where id = any ($7) and ' || v_where
        using v_run.status, v_run.ids, v_run.received_after, v_run.received_before,
              v_run.event_type, v_run.account_id, v_ids;
      get diagnostics requeued = row_count;
    else
      -- Without the status triggers (Citus), the counts and the floors are kept here.
      requeued := spectrum.requeue_counted(v_where, v_run.status, v_run.ids,
        v_run.received_after, v_run.received_before, v_run.event_type, v_run.account_id, v_ids);
    end if;
  exception when lock_not_available or deadlock_detected then
    timed_out := true;
    finished := false;
    update spectrum.reprocess_runs r set lock_timeouts = r.lock_timeouts + 1 where r.run_id = p_run_id;
    perform pg_sleep(0.5);
    return;
  end;

  v_now := clock_timestamp();
  update spectrum.reprocess_runs r
     set requeued = r.requeued + reprocess_chunk.requeued,
         chunks = r.chunks + 1,
         after_id = v_next,
         last_chunk_at = v_now,
         finished_at = case when reprocess_chunk.finished then v_now end
   where r.run_id = p_run_id;
end
$$;

comment on function spectrum.reprocess_chunk(bigint, integer) is
  'Internal (spectrum.reprocess_in_chunks): re-queues the next chunk of a run in spectrum.reprocess_runs and moves its cursor, in the caller''s transaction; reports the rows re-queued, whether it still waits for transactions older than the run, whether a lock wait timed out (nothing done), and whether the run is finished.';

alter function spectrum.reprocess_chunk(bigint, integer) owner to spectrum_definer;
revoke all on function spectrum.reprocess_chunk(bigint, integer) from public;
grant execute on function spectrum.reprocess_chunk(bigint, integer) to spectrum_operator;

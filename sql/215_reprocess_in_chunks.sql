/*
 * reprocess_in_chunks: spectrum.reprocess for millions of rows. Same filters; the rows are
 * re-queued in chunks that each commit (spectrum.reprocess_chunk), with a NOTICE per chunk, so no
 * transaction holds many row locks or runs long. Stopped anywhere (pg_cancel_backend, Ctrl-C, a
 * crash), CALL it again with the run_id it returned: it continues after the last committed chunk.
 * Security invoker and without a SET clause, since a procedure may commit only then; every name
 * is qualified, and the writes happen in the security definer functions it calls.
 */
create or replace procedure spectrum.reprocess_in_chunks(
  status text default null,
  ids uuid[] default null,
  received_after timestamptz default null,
  received_before timestamptz default null,
  event_type text default null,
  account_id uuid default null,
  chunk_size integer default null,
  dry_run boolean default false,
  inout run_id bigint default null
)
language plpgsql
as $$
declare
  v_call_started timestamptz := pg_catalog.clock_timestamp();
  v_step record;
  v_run spectrum.reprocess_runs;
  v_matched bigint;
  v_requeued bigint := 0;
  v_timeouts integer := 0;
  v_waited_since timestamptz;
  v_seconds numeric;
begin
  if reprocess_in_chunks.run_id is null then
    select s.run_id, s.matched into reprocess_in_chunks.run_id, v_matched
      from spectrum.reprocess_start(reprocess_in_chunks.status, reprocess_in_chunks.ids,
             reprocess_in_chunks.received_after, reprocess_in_chunks.received_before,
             reprocess_in_chunks.event_type, reprocess_in_chunks.account_id,
             coalesce(reprocess_in_chunks.chunk_size, 10000), reprocess_in_chunks.dry_run) s;
    if reprocess_in_chunks.dry_run then
      raise notice 'spectrum.reprocess_in_chunks: dry run: % rows match (% chunks of %); nothing changed',
        v_matched, pg_catalog.ceil(v_matched::numeric / coalesce(reprocess_in_chunks.chunk_size, 10000)),
        coalesce(reprocess_in_chunks.chunk_size, 10000);
      return;
    end if;
    raise notice 'reprocess run %: % rows to re-queue in chunks of %; to resume: CALL spectrum.reprocess_in_chunks(run_id => %)',
      reprocess_in_chunks.run_id, v_matched, coalesce(reprocess_in_chunks.chunk_size, 10000),
      reprocess_in_chunks.run_id;
  else
    if pg_catalog.num_nonnulls(reprocess_in_chunks.status, reprocess_in_chunks.ids,
         reprocess_in_chunks.received_after, reprocess_in_chunks.received_before,
         reprocess_in_chunks.event_type, reprocess_in_chunks.account_id) > 0
       or reprocess_in_chunks.dry_run then
      raise exception 'spectrum.reprocess_in_chunks: a resume takes no filters'
        using hint = 'The run keeps the filters it started with: CALL spectrum.reprocess_in_chunks(run_id => '
                     || reprocess_in_chunks.run_id || '), chunk_size may change.',
              errcode = '22023';
    end if;
    select * into v_run from spectrum.reprocess_runs r where r.run_id = reprocess_in_chunks.run_id;
    if not found then
      raise exception 'reprocess run % does not exist', reprocess_in_chunks.run_id
        using hint = 'select * from spectrum.reprocess_progress lists the runs.', errcode = '22023';
    end if;
    if v_run.finished_at is not null then
      raise notice 'reprocess run %: finished at %: % of % rows re-queued; nothing to resume',
        v_run.run_id, v_run.finished_at, v_run.requeued, v_run.matched;
      return;
    end if;
    raise notice 'reprocess run %: resuming after id % (% of % rows re-queued)',
      v_run.run_id, v_run.after_id, v_run.requeued, v_run.matched;
  end if;
  commit;

  loop
    v_step := spectrum.reprocess_chunk(reprocess_in_chunks.run_id, reprocess_in_chunks.chunk_size);
    if v_step.waiting > 0 then
      if v_waited_since is null
         or pg_catalog.clock_timestamp() - v_waited_since > interval '10 seconds' then
        v_waited_since := pg_catalog.clock_timestamp();
        raise notice 'reprocess run %: waiting for % transactions that were running when it started (a pipeline batch may be running the code from before a fix)',
          reprocess_in_chunks.run_id, v_step.waiting;
      end if;
    elsif v_step.timed_out then
      v_timeouts := v_timeouts + 1;
      raise notice 'reprocess run %: a lock wait timed out (% in a row); the chunk is retried',
        reprocess_in_chunks.run_id, v_timeouts;
      if v_timeouts >= 20 then
        raise exception 'reprocess run %: a chunk timed out on locks % times in a row', reprocess_in_chunks.run_id, v_timeouts
          using hint = 'A long transaction holds raw_events rows or spectrum.status_totals (see pg_locks and pg_stat_activity); once it ends, CALL spectrum.reprocess_in_chunks(run_id => '
                       || reprocess_in_chunks.run_id || ').',
                errcode = '55P03';
      end if;
    else
      v_timeouts := 0;
      v_requeued := v_requeued + v_step.requeued;
      -- Said once committed, so that a NOTICE never reports a chunk a cancel undid.
      commit;
      select * into v_run from spectrum.reprocess_runs r where r.run_id = reprocess_in_chunks.run_id;
      v_seconds := greatest(extract(epoch from pg_catalog.clock_timestamp() - v_call_started), 0.001);
      raise notice 'reprocess run %: chunk %: % of % rows re-queued (%), % rows/s%',
        reprocess_in_chunks.run_id, v_run.chunks, v_run.requeued, v_run.matched,
        pg_catalog.round(100.0 * v_run.requeued / greatest(v_run.matched, 1), 1) || '%',
        pg_catalog.round(v_requeued / v_seconds),
        case when v_step.finished then '; finished' else '' end;
    end if;
    commit;
    exit when v_step.finished;
  end loop;
end
$$;

comment on procedure spectrum.reprocess_in_chunks(text, uuid[], timestamptz, timestamptz, text, uuid, integer, boolean, bigint) is
  'Re-queues the raw events spectrum.reprocess would (same filters), in chunks of chunk_size rows (default 10000) that each commit, with a NOTICE per chunk; returns its run_id (spectrum.reprocess_runs). Stopped at any point, CALL it with run_id => that id (and optionally a new chunk_size) to resume after the last committed chunk. dry_run => true only counts. CALL it outside a transaction block.';

revoke all on procedure spectrum.reprocess_in_chunks(text, uuid[], timestamptz, timestamptz, text, uuid, integer, boolean, bigint) from public;
grant execute on procedure spectrum.reprocess_in_chunks(text, uuid[], timestamptz, timestamptz, text, uuid, integer, boolean, bigint) to spectrum_operator;

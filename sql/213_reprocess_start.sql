/*
 * reprocess_start: spectrum.reprocess_in_chunks's first step. Checks the filters, counts the rows
 * they match, and records the run (with the transactions in flight now, which its chunks wait
 * out); with p_dry_run it only counts. Security definer, owned by spectrum_definer, so that an
 * operator's CALL may record a run it cannot write itself.
 */
create or replace function spectrum.reprocess_start(
  p_status text,
  p_ids uuid[],
  p_received_after timestamptz,
  p_received_before timestamptz,
  p_event_type text,
  p_account_id uuid,
  p_chunk_size integer,
  p_dry_run boolean,
  out run_id bigint,
  out matched bigint
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_where text;
  v_now timestamptz := clock_timestamp();
  v_own xid8;
  v_snapshot pg_snapshot;
  v_in_flight xid8[];
begin
  v_where := spectrum.reprocess_filter('spectrum.reprocess_in_chunks', p_status, p_ids,
    p_received_after, p_received_before, p_event_type, p_account_id);
  if p_chunk_size is null or p_chunk_size < 1 then
    raise exception 'spectrum.reprocess_in_chunks: chunk_size must be a positive integer, got %', p_chunk_size
      using hint = 'Call it as CALL spectrum.reprocess_in_chunks(…, chunk_size => 10000).', errcode = '22023';
  end if;

  execute 'select count(*) from spectrum.raw_events where ' || v_where
     into matched
    using p_status, p_ids, p_received_after, p_received_before, p_event_type, p_account_id;
  if p_dry_run then
    return;
  end if;

  -- Every transaction that has an id older than this one's and has not ended: those in the
  -- snapshot, and those above its xmax (assigned before ours, not yet ended when it was taken).
  v_own := pg_current_xact_id();
  v_snapshot := pg_current_snapshot();
  v_in_flight := array(
    select x from pg_snapshot_xip(v_snapshot) x
    union all
    select g::text::xid8
      from generate_series(pg_snapshot_xmax(v_snapshot)::text::bigint, v_own::text::bigint - 1) g);

  insert into spectrum.reprocess_runs as r
         (started_at, started_by, status, ids, received_after, received_before, event_type,
          account_id, chunk_size, matched, in_flight_at_start)
  values (v_now, session_user, p_status, p_ids, p_received_after, p_received_before, p_event_type,
          p_account_id, p_chunk_size, matched, v_in_flight)
  returning r.run_id into run_id;
end
$$;

comment on function spectrum.reprocess_start(text, uuid[], timestamptz, timestamptz, text, uuid, integer, boolean) is
  'Internal (spectrum.reprocess_in_chunks): checks the filters, counts the rows they match and records a run in spectrum.reprocess_runs; with p_dry_run only counts.';

alter function spectrum.reprocess_start(text, uuid[], timestamptz, timestamptz, text, uuid, integer, boolean) owner to spectrum_definer;
revoke all on function spectrum.reprocess_start(text, uuid[], timestamptz, timestamptz, text, uuid, integer, boolean) from public;
grant execute on function spectrum.reprocess_start(text, uuid[], timestamptz, timestamptz, text, uuid, integer, boolean) to spectrum_operator;

/*
 * requeue_counted: the re-queue UPDATE of spectrum.reprocess and spectrum.reprocess_chunk where
 * raw_events has no status_totals triggers (Citus drops them, docs/citus.md): it does their work
 * itself. One UPDATE per former status, so each count is exact: done and failed leave
 * status_totals, and every bucket's pending floor comes down to the first id re-queued
 * (022_pending_floor.sql). p_where and $1..$6 are spectrum.reprocess_filter's; p_chunk, when
 * given, limits the rows to those ids. Runs as its caller (the security definer routines).
 */
create or replace function spectrum.requeue_counted(
  p_where text,
  p_status text,
  p_ids uuid[],
  p_received_after timestamptz,
  p_received_before timestamptz,
  p_event_type text,
  p_account_id uuid,
  p_chunk uuid[] default null
)
returns bigint
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_old text;
  v_n bigint;
  v_first uuid;
  v_total bigint := 0;
begin
  -- done before failed: the lock order of status_totals (031_status_totals.sql). Only the status
  -- asked for, if one is: Citus fails a modification whose WHERE contradicts itself.
  foreach v_old in array case when p_status is null then array['done', 'failed', 'processing']
                              else array[p_status] end loop
    execute 'with r as (update spectrum.raw_events
                           set status = ''pending'', attempts = 0, error_msg = null, processed_at = null
                         where ' || case when p_chunk is null then '' else 'id = any ($7) and ' end
            || p_where || ' and status = $8
                        returning id)
             select count(*), pg_catalog.min(id::text collate "C")::uuid from r'
       into v_n, v_first
      using p_status, p_ids, p_received_after, p_received_before, p_event_type, p_account_id,
            p_chunk, v_old;
    continue when v_n = 0;
    v_total := v_total + v_n;
    if v_old in ('done', 'failed') then
      update spectrum.status_totals set events = events - v_n where status = v_old;
    end if;
    update spectrum.pending_floor set floor = v_first where floor > v_first;
  end loop;
  return v_total;
end
$$;

comment on function spectrum.requeue_counted(text, text, uuid[], timestamptz, timestamptz, text, uuid, uuid[]) is
  'Internal (reprocess, reprocess_chunk): re-queues the rows matching a reprocess filter where raw_events has no status triggers (Citus), keeping status_totals and the pending floors right itself; returns how many.';

revoke all on function spectrum.requeue_counted(text, text, uuid[], timestamptz, timestamptz, text, uuid, uuid[]) from public;
grant execute on function spectrum.requeue_counted(text, text, uuid[], timestamptz, timestamptz, text, uuid, uuid[]) to spectrum_definer;

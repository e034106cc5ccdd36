/*
 * reprocess: an operator's re-queue after a fix, in one UPDATE; a bare call is refused
 * (spectrum.reprocess_filter). dry_run counts instead. For millions of rows,
 * spectrum.reprocess_in_chunks. Security definer owned by spectrum_definer (which may update only
 * the status columns). Parameters are named like the columns, so the body qualifies them; values
 * reach the query only through USING.
 */
-- The earlier signature, without the payload filters and dry_run.
drop function if exists spectrum.reprocess(text, uuid[], timestamptz, timestamptz);

create or replace function spectrum.reprocess(
  status text default null,
  ids uuid[] default null,
  received_after timestamptz default null,
  received_before timestamptz default null,
  event_type text default null,
  account_id uuid default null,
  dry_run boolean default false
)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_where text;
  v_count bigint;
begin
  v_where := spectrum.reprocess_filter('spectrum.reprocess', reprocess.status, reprocess.ids,
    reprocess.received_after, reprocess.received_before, reprocess.event_type, reprocess.account_id);

  if reprocess.dry_run then
    execute 'select count(*) from spectrum.raw_events where ' || v_where
       into v_count
      using reprocess.status, reprocess.ids, reprocess.received_after, reprocess.received_before,
            reprocess.event_type, reprocess.account_id;
    return v_count;
  end if;

  -- Without the status triggers (Citus), the counts and the floors are kept here.
  if not exists (select from pg_catalog.pg_trigger
                  where tgrelid = 'spectrum.raw_events'::pg_catalog.regclass
                    and tgname = 'raw_events_status_changed') then
    return spectrum.requeue_counted(v_where, reprocess.status, reprocess.ids,
      reprocess.received_after, reprocess.received_before, reprocess.event_type, reprocess.account_id);
  end if;

  execute 'update spectrum.raw_events
              set status = ''pending'', attempts = 0, error_msg = null, processed_at = null
            where ' || v_where
    using reprocess.status, reprocess.ids, reprocess.received_after, reprocess.received_before,
          reprocess.event_type, reprocess.account_id;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

comment on function spectrum.reprocess(text, uuid[], timestamptz, timestamptz, text, uuid, boolean) is
  'Re-queues raw events in one UPDATE: rows matching every filter given (status done/failed/processing, ids, received_after <= received_at < received_before, payload event_type, payload account_id) become pending with attempts 0; returns how many, or with dry_run => true how many it would, changing nothing. At least one filter is required. Reprocessed events replace their facts, never duplicate them. For millions of rows: CALL spectrum.reprocess_in_chunks.';

alter function spectrum.reprocess(text, uuid[], timestamptz, timestamptz, text, uuid, boolean) owner to spectrum_definer;
revoke all on function spectrum.reprocess(text, uuid[], timestamptz, timestamptz, text, uuid, boolean) from public;
grant execute on function spectrum.reprocess(text, uuid[], timestamptz, timestamptz, text, uuid, boolean) to spectrum_operator;

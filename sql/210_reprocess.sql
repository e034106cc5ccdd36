/*
 * reprocess: an operator's re-queue after a fix; a bare call is refused. Security definer owned by
 * spectrum_definer (which may update only the status columns). Parameters are named like the
 * columns, so the body qualifies them; values reach the query only through USING.
 */
create or replace function spectrum.reprocess(
  status text default null,
  ids uuid[] default null,
  received_after timestamptz default null,
  received_before timestamptz default null
)
returns bigint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_where text[] := array['status <> ''pending'''];
  v_count bigint;
begin
  if reprocess.status is null and reprocess.ids is null
     and reprocess.received_after is null and reprocess.received_before is null then
    raise exception 'spectrum.reprocess needs at least one filter'
      using hint = 'Say which rows to re-queue, e.g. select spectrum.reprocess(status => ''failed''); '
                   || 'filters: status, ids, received_after, received_before (they combine).',
            errcode = '22023';
  end if;
  if reprocess.status is not null and reprocess.status not in ('done', 'failed', 'processing') then
    raise exception 'spectrum.reprocess cannot re-queue status %', pg_catalog.quote_literal(reprocess.status)
      using hint = 'status must be one of done, failed, processing (pending rows are already queued).',
            errcode = '22023';
  end if;
  if reprocess.received_after >= reprocess.received_before then
    raise exception 'spectrum.reprocess: received_after (%) is not before received_before (%)',
                    reprocess.received_after, reprocess.received_before
      using hint = 'The window is received_after <= received_at < received_before.', errcode = '22023';
  end if;

  -- Only the filters given reach the query, so each call gets the plan that fits it.
  if reprocess.status is not null then v_where := v_where || 'status = $1'::text; end if;
  if reprocess.ids is not null then v_where := v_where || 'id = any ($2)'::text; end if;
  if reprocess.received_after is not null then v_where := v_where || 'received_at >= $3'::text; end if;
  if reprocess.received_before is not null then v_where := v_where || 'received_at < $4'::text; end if;

  execute 'update spectrum.raw_events
              set status = ''pending'', attempts = 0, error_msg = null, processed_at = null
            where ' || pg_catalog.array_to_string(v_where, ' and ')
    using reprocess.status, reprocess.ids, reprocess.received_after, reprocess.received_before;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

comment on function spectrum.reprocess(text, uuid[], timestamptz, timestamptz) is
  'Re-queues raw events: rows matching every filter given (status done/failed/processing, ids, received_after <= received_at < received_before) become pending with attempts 0; returns how many. At least one filter is required. Reprocessed events replace their facts, never duplicate them.';

alter function spectrum.reprocess(text, uuid[], timestamptz, timestamptz) owner to spectrum_definer;
revoke all on function spectrum.reprocess(text, uuid[], timestamptz, timestamptz) from public;
grant execute on function spectrum.reprocess(text, uuid[], timestamptz, timestamptz) to spectrum_operator;

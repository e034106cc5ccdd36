/*
 * reprocess: puts raw events back in the queue. An operator calls it from psql after a bug fix
 * or a spec change, e.g. `select spectrum.reprocess(status => 'failed');`. The filters combine
 * (AND): status (done, failed or processing), ids, received_after (inclusive) and
 * received_before (exclusive). At least one is required, so that a bare call never re-queues
 * the whole table by accident.
 *
 * Matching rows that are not pending become pending with attempts 0 and no outcome; the next
 * tick processes them again. Facts stay exactly-once: a reprocessed event replaces its fact
 * (spectrum.event_index), it never adds one. The done counter of spectrum.status_totals
 * follows through the raw_events triggers. Rows a running batch holds are pending, so they are
 * not touched and never waited for.
 *
 * Security definer (owner spectrum_definer, which may only update the status columns), so
 * spectrum_operator can run it without being able to update raw_events. The parameters are
 * named like the columns, for named-argument calls; the body qualifies them
 * (reprocess.status) and the query text holds no caller input (values go through USING).
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

  -- Only the filters given reach the query, so each call gets the plan that fits it (the
  -- partial status index for failed, the primary key for ids).
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

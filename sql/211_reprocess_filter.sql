/*
 * reprocess_filter: the one reading of reprocess's filters, for spectrum.reprocess and
 * spectrum.reprocess_in_chunks. Refuses a call without any filter (or with a bad one), naming
 * p_caller, and returns the WHERE clause over raw_events of the filters given, with their values
 * as $1..$6 in parameter order, so each query gets the plan that fits the filters actually given.
 */
create or replace function spectrum.reprocess_filter(
  p_caller text,
  p_status text,
  p_ids uuid[],
  p_received_after timestamptz,
  p_received_before timestamptz,
  p_event_type text,
  p_account_id uuid
)
returns text
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_where text[] := array['status <> ''pending'''];
begin
  if p_status is null and p_ids is null and p_received_after is null and p_received_before is null
     and p_event_type is null and p_account_id is null then
    raise exception '% needs at least one filter', p_caller
      using hint = 'Say which rows to re-queue, e.g. '
                   || case when p_caller like '%in_chunks' then 'CALL ' else 'select ' end
                   || p_caller || '(status => ''failed''); '
                   || 'filters: status, ids, received_after, received_before, event_type, '
                   || 'account_id (they combine).',
            errcode = '22023';
  end if;
  if p_status is not null and p_status not in ('done', 'failed', 'processing') then
    raise exception '% cannot re-queue status %', p_caller, quote_literal(p_status)
      using hint = 'status must be one of done, failed, processing (pending rows are already queued).',
            errcode = '22023';
  end if;
  if p_received_after >= p_received_before then
    raise exception '%: received_after (%) is not before received_before (%)',
                    p_caller, p_received_after, p_received_before
      using hint = 'The window is received_after <= received_at < received_before.', errcode = '22023';
  end if;

  if p_status is not null then v_where := v_where || 'status = $1'::text; end if;
  -- Failed rows always carry an error_msg: raw_events_errors_idx finds them.
  if p_status = 'failed' then v_where := v_where || 'error_msg is not null'::text; end if;
  if p_ids is not null then v_where := v_where || 'id = any ($2)'::text; end if;
  if p_received_after is not null then v_where := v_where || 'received_at >= $3'::text; end if;
  if p_received_before is not null then v_where := v_where || 'received_at < $4'::text; end if;
  -- What the payload says, at the default spec's top-level keys. An account_id matches in any
  -- spelling its uuid cast accepts (case, braces, hyphens).
  if p_event_type is not null then
    v_where := v_where || '(payload ->> ''event_type'') = $5'::text;
  end if;
  if p_account_id is not null then
    v_where := v_where
      || 'translate(lower(payload ->> ''account_id''), ''{}-'', '''') = translate($6::text, ''-'', '''')'::text;
  end if;
  return array_to_string(v_where, ' and ');
end
$$;

comment on function spectrum.reprocess_filter(text, text, uuid[], timestamptz, timestamptz, text, uuid) is
  'Internal: checks the filters of spectrum.reprocess and spectrum.reprocess_in_chunks (at least one, a status that can be re-queued, a non-empty window) and returns their WHERE clause over raw_events ($1..$6: status, ids, received_after, received_before, event_type, account_id).';

revoke all on function spectrum.reprocess_filter(text, text, uuid[], timestamptz, timestamptz, text, uuid) from public;
grant execute on function spectrum.reprocess_filter(text, text, uuid[], timestamptz, timestamptz, text, uuid) to spectrum_definer;

/*
 * record_unexpected_error: process_pending's handler when process_claimed raised. Contention
 * leaves the batch pending with an attempt counted; anything else is bisected in subtransactions
 * down to the rows that raise, which alone count an attempt. A row past p_max_attempts fails;
 * rows untried at p_deadline stay pending, uncounted.
 */
-- The earlier signature, without p_deadline.
drop function if exists spectrum.record_unexpected_error(uuid[], text, text, integer, timestamptz);

create or replace function spectrum.record_unexpected_error(
  p_ids uuid[],
  p_sqlstate text,
  p_message text,
  p_max_attempts integer,
  p_now timestamptz default pg_catalog.clock_timestamp(),
  p_deadline timestamptz default 'infinity'
)
returns spectrum.batch_result
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_result spectrum.batch_result := row(0, 0, 0, 0, null)::spectrum.batch_result;
  v_one spectrum.batch_result;
  v_chunk uuid[];
  v_half integer;
  v_queue jsonb := '[]';
  v_state text;
  v_message text;
  v_bad uuid[] := '{}';
  v_states text[] := '{}';
  v_messages text[] := '{}';
begin
  if p_sqlstate in ('40P01', '40001', '55P03') then
    v_bad := p_ids;
    v_states := array_fill(p_sqlstate, array[cardinality(p_ids)]);
    v_messages := array_fill(p_message, array[cardinality(p_ids)]);
  else
    v_half := cardinality(p_ids) / 2;
    if v_half = 0 then
      v_bad := p_ids;
      v_states := array[p_sqlstate];
      v_messages := array[p_message];
    else
      v_queue := jsonb_build_array(to_jsonb(p_ids[1:v_half]), to_jsonb(p_ids[v_half + 1:]));
    end if;
    while jsonb_array_length(v_queue) > 0 and clock_timestamp() < p_deadline loop
      v_chunk := array(select jsonb_array_elements_text(v_queue -> 0)::uuid);
      v_queue := v_queue - 0;
      begin
        v_one := spectrum.process_claimed(v_chunk, p_now);
        if v_one.missing_months is not null then
          v_result.missing_months := array(select distinct m from unnest(v_result.missing_months || v_one.missing_months) m);
        end if;
        v_result.done := v_result.done + v_one.done;
        v_result.failed := v_result.failed + v_one.failed;
        v_result.superseded := v_result.superseded + v_one.superseded;
      exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
        if cardinality(v_chunk) = 1 then
          v_bad := v_bad || v_chunk;
          v_states := v_states || v_state;
          v_messages := v_messages || v_message;
        else
          v_half := cardinality(v_chunk) / 2;
          v_queue := jsonb_build_array(to_jsonb(v_chunk[1:v_half]), to_jsonb(v_chunk[v_half + 1:])) || v_queue;
        end if;
      end;
    end loop;
  end if;

  -- The messages are made in a query of their own: Citus refuses format() in an UPDATE's CASE.
  with bad as (
    select b.id, e.attempts + 1 as attempt,
           case when e.attempts + 1 >= p_max_attempts
                then format('unexpected error after %s attempts: SQLSTATE %s: %s', e.attempts + 1, b.sqlstate, b.message)
                else format('attempt %s of %s failed: SQLSTATE %s: %s (will retry)', e.attempts + 1, p_max_attempts, b.sqlstate, b.message)
           end as error_msg
      from unnest(v_bad, v_states, v_messages) as b(id, sqlstate, message)
      join spectrum.raw_events e on e.id = b.id
  )
  update spectrum.raw_events e
     set attempts = bad.attempt,
         status = case when bad.attempt >= p_max_attempts then 'failed' else 'pending' end,
         processed_at = case when bad.attempt >= p_max_attempts then p_now end,
         error_msg = bad.error_msg
    from bad
   where e.id = bad.id;

  select v_result.failed + count(*) filter (where status = 'failed'),
         count(*) filter (where status = 'pending')
    into v_result.failed, v_result.retried
    from spectrum.raw_events
   where id = any (v_bad);
  return v_result;
end
$$;

revoke all on function spectrum.record_unexpected_error(uuid[], text, text, integer, timestamptz, timestamptz) from public;

comment on function spectrum.record_unexpected_error(uuid[], text, text, integer, timestamptz, timestamptz) is
  'Internal: after process_claimed raised, bisects the batch down to the rows that raise (all of them on contention), counts an attempt for those, and fails rows past p_max_attempts.';

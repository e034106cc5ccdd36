/*
 * json_excerpt: a JSON value as it appears in error_msg: its JSON text, cut to 80
 * characters (77 and '...') so that a 100 kB string does not flood an error message.
 * Called by the extraction (spectrum.extract_event, spectrum.process_claimed) for bad values
 * only; spectrum_operator runs it through spectrum.extract_event.
 *
 * It never writes out more than it shows: a container is walked member by member and the
 * walk stops after 80 characters. Writing the whole value first would let a small payload
 * explode (the number 1e131071 is 8 bytes of jsonb and 131072 characters of text; a 10 kB
 * array of them is a gigabyte) and fail the whole batch with out of memory. The walk is a
 * loop over an explicit stack, so nesting depth costs nothing either.
 */
create or replace function spectrum.json_excerpt(p_value jsonb)
returns text
language plpgsql
immutable
strict
parallel safe
set search_path = pg_catalog, pg_temp
as $$
declare
  v_out text := '';
  -- The containers being written, innermost last: their paths from p_value, and the index
  -- of the member to write next in each.
  v_paths jsonb[] := '{}';
  v_next integer[] := '{}';
  v_depth integer;
  v_path jsonb := '[]';
  v_value jsonb := p_value;
  v_container jsonb;
  v_key text;
  v_i integer;
begin
  loop
    if v_value is not null then
      case jsonb_typeof(v_value)
        when 'string' then
          v_out := v_out || to_jsonb(left(v_value #>> '{}'::text[], 81))::text;
        when 'array' then
          v_out := v_out || '[';
          v_paths := v_paths || v_path;
          v_next := v_next || 0;
        when 'object' then
          v_out := v_out || '{';
          v_paths := v_paths || v_path;
          v_next := v_next || 0;
        else
          v_out := v_out || v_value::text;  -- a number, true, false or null
      end case;
      v_value := null;
    end if;
    v_depth := cardinality(v_paths);
    exit when v_depth = 0 or length(v_out) > 80;

    v_container := p_value #> array(select jsonb_array_elements_text(v_paths[v_depth]));
    v_i := v_next[v_depth];
    if jsonb_typeof(v_container) = 'array' then
      v_key := case when v_i < jsonb_array_length(v_container) then v_i::text end;
    else
      v_key := (select k from jsonb_object_keys(v_container) k offset v_i limit 1);
    end if;
    if v_key is null then
      v_out := v_out || case when jsonb_typeof(v_container) = 'array' then ']' else '}' end;
      v_paths := v_paths[1:v_depth - 1];
      v_next := v_next[1:v_depth - 1];
      continue;
    end if;
    if v_i > 0 then
      v_out := v_out || ', ';
    end if;
    if jsonb_typeof(v_container) = 'object' then
      v_out := v_out || to_jsonb(left(v_key, 81))::text || ': ';
    end if;
    v_next[v_depth] := v_i + 1;
    v_path := v_paths[v_depth] || to_jsonb(v_key);
    v_value := v_container #> array[v_key];
  end loop;
  return case when length(v_out) > 80 then left(v_out, 77) || '...' else v_out end;
end
$$;

comment on function spectrum.json_excerpt(jsonb) is 'The JSON text of p_value, cut to 80 characters, for error messages; never writes out more of the value than it shows.';

revoke all on function spectrum.json_excerpt(jsonb) from public;
grant execute on function spectrum.json_excerpt(jsonb) to spectrum_operator;

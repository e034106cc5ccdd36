/*
 * json_excerpt: a bad value as error_msg quotes it (extract_event, process_claimed), its JSON text
 * cut to 80 characters. It stops writing at 80 instead of cutting the full text: 8 bytes of jsonb
 * (1e131071) print as 131072 characters, so a small payload could exhaust memory.
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
  -- The open containers, innermost last: their paths from p_value and their next member.
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

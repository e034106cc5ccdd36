/*
 * json_excerpt: a JSON value as it appears in error_msg: its JSON text, cut to 80
 * characters so that a 100 kB string does not flood an error message. spectrum_operator runs
 * it through spectrum.extract_event.
 */
create or replace function spectrum.json_excerpt(p_value jsonb)
returns text
language sql
immutable
parallel safe
as $$
  select case when pg_catalog.length(p_value::text) > 80
              then pg_catalog.left(p_value::text, 77) || '...'
              else p_value::text end
$$;

comment on function spectrum.json_excerpt(jsonb) is 'The JSON text of p_value, cut to 80 characters, for error messages.';

grant execute on function spectrum.json_excerpt(jsonb) to spectrum_operator;

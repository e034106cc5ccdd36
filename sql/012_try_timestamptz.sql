/*
 * try_timestamptz: extract_event's fallback cast for text its timestamp shape test rejected; null
 * instead of an error. ISO-8601 only (a bare cast takes 'yesterday' too); stable, because a value
 * without an offset is read in the session time zone.
 */
create or replace function spectrum.try_timestamptz(p_text text)
returns timestamptz
language plpgsql
stable
strict
parallel unsafe
as $$
begin
  if p_text !~ '^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)? ?([Zz]|[+-]\d{2}(:?\d{2})?)?$' then
    return null;
  end if;
  return p_text::timestamptz;
exception when others then
  return null;
end
$$;

comment on function spectrum.try_timestamptz(text) is 'p_text as a timestamptz when it is an ISO-8601 date or timestamp, else null.';

revoke all on function spectrum.try_timestamptz(text) from public;
grant execute on function spectrum.try_timestamptz(text) to spectrum_operator;

/*
 * try_uuid: extract_event's fallback cast for text its cheap uuid shape test rejected; null
 * instead of an error. Parallel unsafe: its exception block is a subtransaction.
 */
create or replace function spectrum.try_uuid(p_text text)
returns uuid
language plpgsql
immutable
strict
parallel unsafe
as $$
begin
  return p_text::uuid;
exception when invalid_text_representation then
  return null;
end
$$;

comment on function spectrum.try_uuid(text) is 'p_text as a uuid, or null when it is not one.';

revoke all on function spectrum.try_uuid(text) from public;
grant execute on function spectrum.try_uuid(text) to spectrum_operator;

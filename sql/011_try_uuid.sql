/*
 * try_uuid: the fallback cast for text that failed the extraction's cheap uuid shape test
 * (braces, no hyphens, …). Returns null instead of raising. Only odd values pay for the
 * exception block. Parallel unsafe: an exception block starts a subtransaction, which a
 * parallel query refuses. spectrum_operator runs it through spectrum.extract_event.
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

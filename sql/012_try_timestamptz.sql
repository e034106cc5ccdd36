/*
 * try_timestamptz: the fallback cast for timestamps that failed the extraction's cheap shape
 * test. Only ISO-8601 forms are accepted (PostgreSQL alone would also take 'yesterday' or
 * 'epoch'); a string without an offset is read in the session time zone, which the pipeline
 * sets to UTC. Returns null instead of raising. Parallel unsafe: an exception block starts a
 * subtransaction, which a parallel query refuses. spectrum_operator runs it through
 * spectrum.extract_event.
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

/*
 * uuid_v7: a version 7 uuid for p_at (RFC 9562; microseconds * 4096/1000 fill the 60 time bits),
 * raw_events' default id: ids follow insert order even within one INSERT, which retention and the
 * tie-break between versions of an event rely on. Runs per producer row, so it stays inlinable:
 * one expression, no FROM or SET, p_at used once (a volatile argument inlines into one use only),
 * exact pg_catalog operators only (the body is parsed under the caller's search_path).
 */
create or replace function spectrum.uuid_v7(p_at timestamptz default pg_catalog.clock_timestamp())
returns uuid
language sql
volatile
parallel safe
as $$
  select (overlay(overlay(
            pg_catalog.lpad(pg_catalog.to_hex(
              (pg_catalog.int8(pg_catalog.date_part('epoch'::text, p_at) operator(pg_catalog.*) 1000000::double precision)
                 operator(pg_catalog.*) 512::bigint) operator(pg_catalog./) 125::bigint), 15, '0'::text)
            placing '-7'::text from 13 for 0) placing '-'::text from 9 for 0)
          operator(pg_catalog.||) pg_catalog.substr(pg_catalog.gen_random_uuid()::text, 19))::pg_catalog.uuid
$$;

comment on function spectrum.uuid_v7(timestamptz) is
  'A version 7 (time-ordered) uuid for the instant p_at, with microsecond ordering; the default id of spectrum.raw_events.';

revoke all on function spectrum.uuid_v7(timestamptz) from public;
grant execute on function spectrum.uuid_v7(timestamptz) to spectrum_producer, spectrum_operator, spectrum_definer;

/*
 * uuid_v7: a time-ordered uuid (RFC 9562 version 7): 48 bits of Unix milliseconds, then
 * random bits. raw_events ids default to it so that new rows append to the primary key's
 * right edge and retention can find old rows by id range.
 */
create or replace function spectrum.uuid_v7(p_at timestamptz default clock_timestamp())
returns uuid
language sql
volatile
parallel safe
as $$
  select pg_catalog.encode(
    pg_catalog.set_bit(pg_catalog.set_bit(
      overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
        placing substring(pg_catalog.int8send((extract(epoch from p_at) * 1000)::bigint) from 3)
        from 1 for 6),
      52, 1), 53, 1),
    'hex')::uuid
$$;

comment on function spectrum.uuid_v7(timestamptz) is
  'A version 7 (time-ordered) uuid for the instant p_at; the default id of spectrum.raw_events.';

grant execute on function spectrum.uuid_v7(timestamptz) to spectrum_producer, spectrum_operator, spectrum_definer;

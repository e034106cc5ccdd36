/*
 * uuid_v7: a time-ordered uuid (RFC 9562 version 7) for the instant p_at: 48 bits of Unix
 * milliseconds, then the microseconds within that millisecond in the 12 "rand_a" bits (the
 * RFC's extra clock precision), then random bits. raw_events ids default to it, so new rows
 * append to the primary key's right edge, retention finds old rows by id range, and rows of
 * one INSERT or COPY get increasing ids in the order they were written (the pipeline breaks
 * ties between versions of an event received in the same transaction by id).
 */
create or replace function spectrum.uuid_v7(p_at timestamptz default clock_timestamp())
returns uuid
language sql
volatile
parallel safe
as $$
  select pg_catalog.encode(
           overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                   placing pg_catalog.int8send((t.us / 1000) << 16 | (28672 + (t.us % 1000) * 4096 / 1000))
                   from 1 for 8),
           'hex')::uuid
    from (select (extract(epoch from p_at) * 1000000)::bigint as us) t
$$;

comment on function spectrum.uuid_v7(timestamptz) is
  'A version 7 (time-ordered) uuid for the instant p_at, with microsecond ordering; the default id of spectrum.raw_events.';

grant execute on function spectrum.uuid_v7(timestamptz) to spectrum_producer, spectrum_operator, spectrum_definer;

revoke all on function spectrum.uuid_v7(timestamptz) from public;

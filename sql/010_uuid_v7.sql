/*
 * uuid_v7: a time-ordered uuid (RFC 9562 version 7) for the instant p_at: 48 bits of Unix
 * milliseconds, then the microseconds within that millisecond in the 12 "rand_a" bits (the
 * RFC's extra clock precision), then random bits. raw_events ids default to it, so new rows
 * append to the primary key's right edge, retention finds old rows by id range, and rows of
 * one INSERT or COPY get increasing ids in the order they were written (the pipeline breaks
 * ties between versions of an event received in the same transaction by id).
 *
 * It runs for every producer row and inside maintenance, under the caller's search_path, and
 * a SET clause would cost every COPY a function-call frame: so every function and operator is
 * an exact pg_catalog match (bigint operands, operator(pg_catalog.…), which all share one
 * precedence, hence the parentheses), which nothing created in another schema can outbid.
 */
create or replace function spectrum.uuid_v7(p_at timestamptz default pg_catalog.clock_timestamp())
returns uuid
language sql
volatile
parallel safe
as $$
  select pg_catalog.encode(
           pg_catalog.overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
             pg_catalog.int8send(
               ((t.us operator(pg_catalog./) 1000::bigint) operator(pg_catalog.<<) 16::integer)
               operator(pg_catalog.|)
               (28672::bigint operator(pg_catalog.+)
                 (((t.us operator(pg_catalog.%) 1000::bigint) operator(pg_catalog.*) 4096::bigint) operator(pg_catalog./) 1000::bigint))),
             1::integer, 8::integer),
           'hex'::text)::uuid
    from (select pg_catalog.int8(pg_catalog.date_part('epoch'::text, p_at) operator(pg_catalog.*) 1000000::double precision) as us) t
$$;

comment on function spectrum.uuid_v7(timestamptz) is
  'A version 7 (time-ordered) uuid for the instant p_at, with microsecond ordering; the default id of spectrum.raw_events.';

revoke all on function spectrum.uuid_v7(timestamptz) from public;
grant execute on function spectrum.uuid_v7(timestamptz) to spectrum_producer, spectrum_operator, spectrum_definer;

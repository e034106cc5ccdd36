/*
 * fact_partition_name: the name of the monthly fact partition holding instant p_at, e.g.
 * fact_events_2026_12 (months in UTC).
 */
create or replace function spectrum.fact_partition_name(p_at timestamptz)
returns text
language sql
immutable
parallel safe
as $$
  select 'fact_events_' || pg_catalog.to_char(p_at at time zone 'UTC', 'YYYY_MM')
$$;

comment on function spectrum.fact_partition_name(timestamptz) is 'Name of the monthly partition of spectrum.fact_events that holds p_at (UTC months).';

revoke all on function spectrum.fact_partition_name(timestamptz) from public;

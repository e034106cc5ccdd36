/*
 * fact_partition_name: the monthly fact partition of p_at, e.g. fact_events_2026_12 (UTC months).
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

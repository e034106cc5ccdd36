/*
 * fact_partition_ranges: the attached partitions of spectrum.fact_events with their bounds, for
 * maintenance's retention and health's checks. Bounds are read back in UTC whatever the
 * session's time zone; a partition bounded by MINVALUE or MAXVALUE, or a default one, is left out.
 */
create or replace function spectrum.fact_partition_ranges()
returns table (partition regclass, range_from timestamptz, range_to timestamptz)
language plpgsql
stable
set timezone = 'UTC'
set search_path = pg_catalog, pg_temp
as $$
begin
  return query
    select b.oid::regclass,
           substring(b.bound, $re$FROM \('([^']+)'\)$re$)::timestamptz,
           substring(b.bound, $re$TO \('([^']+)'\)$re$)::timestamptz
      from (select c.oid, pg_get_expr(c.relpartbound, c.oid) as bound
              from pg_inherits i
              join pg_class c on c.oid = i.inhrelid
             where i.inhparent = 'spectrum.fact_events'::regclass) b
     where b.bound ~ $re$^FOR VALUES FROM \('[^']+'\) TO \('[^']+'\)$re$
     order by 2;
end
$$;

comment on function spectrum.fact_partition_ranges() is 'The partitions attached to spectrum.fact_events, each with the range of occurred_at it holds, oldest first.';

revoke all on function spectrum.fact_partition_ranges() from public;
grant execute on function spectrum.fact_partition_ranges() to spectrum_definer;

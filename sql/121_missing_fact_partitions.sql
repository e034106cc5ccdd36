/*
 * missing_fact_partitions: the months of p_months without a fact partition; read by every batch.
 */
create or replace function spectrum.missing_fact_partitions(p_months timestamptz[])
returns timestamptz[]
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  select pg_catalog.array_agg(m order by m)
    from pg_catalog.unnest(p_months) m
   where not exists (
     select from pg_catalog.pg_inherits i
       join pg_catalog.pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'spectrum.fact_events'::regclass
        and c.relname = spectrum.fact_partition_name(m))
$$;

comment on function spectrum.missing_fact_partitions(timestamptz[]) is 'The months among p_months without a fact_events partition, or null.';

revoke all on function spectrum.missing_fact_partitions(timestamptz[]) from public;

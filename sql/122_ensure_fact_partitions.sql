/*
 * ensure_fact_partitions: creates the monthly fact partitions for p_months that do not exist.
 * Callers: spectrum.process_pending (in a transaction of its own, holding no row locks) and
 * spectrum.maintenance (months ahead). Safe under concurrency: creators queue on an advisory
 * lock and re-check. The partition is created as a plain table and then ATTACHed, which takes
 * only SHARE UPDATE EXCLUSIVE on fact_events, so running batches keep inserting; there is no
 * default partition whose scan could block or fail the attach.
 */
create or replace function spectrum.ensure_fact_partitions(p_months timestamptz[])
returns integer
language plpgsql
volatile
set timezone = 'UTC'
set search_path = pg_catalog, pg_temp
as $$
declare
  v_month timestamptz;
  v_name text;
  v_created integer := 0;
begin
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('spectrum.ensure_fact_partitions'));
  foreach v_month in array coalesce(spectrum.missing_fact_partitions(p_months), '{}') loop
    v_month := pg_catalog.date_trunc('month', v_month);
    v_name := spectrum.fact_partition_name(v_month);
    execute format('create table spectrum.%I (like spectrum.fact_events including defaults)', v_name);
    execute format('alter table spectrum.%I add constraint %I check (occurred_at >= %L and occurred_at < %L)',
                   v_name, v_name || '_range', v_month, v_month + interval '1 month');
    execute format('alter table spectrum.fact_events attach partition spectrum.%I for values from (%L) to (%L)',
                   v_name, v_month, v_month + interval '1 month');
    execute format('alter table spectrum.%I drop constraint %I', v_name, v_name || '_range');
    v_created := v_created + 1;
  end loop;
  return v_created;
end
$$;

comment on function spectrum.ensure_fact_partitions(timestamptz[]) is
  'Creates the missing monthly partitions of spectrum.fact_events for the months p_months; returns how many it created.';

revoke all on function spectrum.ensure_fact_partitions(timestamptz[]) from public;

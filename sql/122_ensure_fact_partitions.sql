/*
 * ensure_fact_partitions: creates the missing monthly fact partitions of p_months for
 * process_pending (holding no row locks) and maintenance (months ahead); creators queue on an
 * advisory lock and re-check. Created plain, then attached, so batches keep inserting facts; but
 * the attach's foreign keys wait behind running batches' dimension upserts, so lock_timeout ends
 * the wait with 55P03, nothing half-made, and callers retry on their next run.
 */
create or replace function spectrum.ensure_fact_partitions(p_months timestamptz[])
returns integer
language plpgsql
volatile
set timezone = 'UTC'
set lock_timeout = '5s'
-- Citus: attaching a partition after the batch's parallel statements needs one connection per node.
set citus.multi_shard_modify_mode = 'sequential'
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
    execute format('comment on table spectrum.%I is %L', v_name,
                   format('Facts that occurred in %s (UTC): a monthly partition of spectrum.fact_events.',
                          pg_catalog.to_char(v_month, 'YYYY-MM')));
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
  'Creates the missing monthly partitions of spectrum.fact_events for the months p_months; returns how many it created. Waits at most 5 s for a lock, then raises 55P03.';

revoke all on function spectrum.ensure_fact_partitions(timestamptz[]) from public;

-- Partitions created before they were given a comment.
do $$
declare
  v_part regclass;
  v_from timestamptz;
begin
  for v_part, v_from in
    select c.oid::regclass,
           pg_catalog.substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid), $re$FROM \('([^']+)'\)$re$)::timestamptz
      from pg_catalog.pg_inherits i
      join pg_catalog.pg_class c on c.oid = i.inhrelid
     where i.inhparent = 'spectrum.fact_events'::regclass
       and pg_catalog.obj_description(c.oid, 'pg_class') is null
  loop
    execute format('comment on table %s is %L', v_part,
                   format('Facts that occurred in %s (UTC): a monthly partition of spectrum.fact_events.',
                          pg_catalog.to_char(v_from at time zone 'UTC', 'YYYY-MM')));
  end loop;
end
$$;

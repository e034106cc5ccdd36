/*
 * claim_pending: the one place that claims work (process_pending). Locks up to p_limit pending
 * rows, skipping locked ones and p_exclude (rows that raised earlier in the call), until the
 * caller's transaction ends; oldest first, the order of raw_events_unfinished_idx (see
 * 020_raw_events.sql). On Citus a claim takes the rows of one bucket (one shard), trying the
 * buckets from a random one, so that concurrent workers start apart (see 021_raw_buckets.sql).
 */
create or replace function spectrum.claim_pending(p_limit integer, p_exclude uuid[] default '{}')
returns uuid[]
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_buckets integer[];
  v_start integer;
  v_ids uuid[] := '{}';
begin
  select array_agg(bucket order by bucket) into v_buckets from spectrum.raw_buckets;
  if v_buckets is null then
    select coalesce(array_agg(id), '{}') into v_ids
      from (select id
              from spectrum.raw_events
             where status = 'pending'
               and id <> all (p_exclude)
             order by received_at, id
             limit p_limit
               for update skip locked) claimed;
    return v_ids;
  end if;
  v_start := floor(random() * cardinality(v_buckets))::integer;
  for i in 0 .. cardinality(v_buckets) - 1 loop
    select coalesce(array_agg(id), '{}') into v_ids
      from (select id
              from spectrum.raw_events
             where bucket = v_buckets[1 + (v_start + i) % cardinality(v_buckets)]
               and status = 'pending'
               and id <> all (p_exclude)
             order by received_at, id
             limit p_limit
               for update skip locked) claimed;
    exit when cardinality(v_ids) > 0;
  end loop;
  return v_ids;
end
$$;

comment on function spectrum.claim_pending(integer, uuid[]) is
  'Internal: locks and returns up to p_limit pending raw_events ids (FOR UPDATE SKIP LOCKED), oldest received first; on Citus, from one bucket (shard) at a time.';

revoke all on function spectrum.claim_pending(integer, uuid[]) from public;

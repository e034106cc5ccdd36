/*
 * claim_pending: the one place that claims work (process_pending). Locks up to p_limit pending
 * rows, skipping locked ones and p_exclude (rows that raised earlier in the call), until the
 * caller's transaction ends; in id order (insert order), by a primary-key range from the bucket's
 * pending floor (see 022_pending_floor.sql), or from p_after, the caller's previous claim, so
 * that a call's claims do not pass over the rows it already finished. On Citus a claim locks one bucket (one shard)
 * at a time, a single-shard query, from a random bucket on so that concurrent workers start apart,
 * and goes on to the next until p_limit rows (see 021_raw_buckets.sql); called on a worker, only
 * the buckets whose shard is on that node.
 */
drop function if exists spectrum.claim_pending(integer, uuid[]);

create or replace function spectrum.claim_pending(
  p_limit integer,
  p_exclude uuid[] default '{}',
  p_after uuid default null
)
returns uuid[]
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_buckets integer[];
  v_bucket integer;
  v_start integer;
  v_from uuid;
  v_ids uuid[] := '{}';
begin
  select array_agg(bucket order by bucket) into v_buckets from spectrum.raw_buckets;
  if v_buckets is not null then
    -- On a Citus worker, only the buckets whose shard is on this node: a job per worker then
    -- processes its own shards (docs/citus.md). Dynamic: plain PostgreSQL has no such catalogs.
    -- (Built by format(), the text is not resolved by plpgsql_check on a server without Citus.)
    execute pg_catalog.format(
      'select coalesce(pg_catalog.array_agg(b.bucket order by b.bucket), ''{}'')
         from spectrum.raw_buckets b
        where pg_catalog.citus_is_coordinator()
           or exists (select from pg_catalog.pg_dist_placement p
                       where p.shardid = pg_catalog.get_shard_id_for_distribution_column(%L, b.bucket)
                         and p.groupid = (select groupid from pg_catalog.pg_dist_local_group))',
      'spectrum.raw_events')
       into v_buckets;
    if cardinality(v_buckets) = 0 then
      return '{}';
    end if;
  end if;
  if v_buckets is null then
    select floor into v_from from spectrum.pending_floor where bucket = 0;
    v_from := greatest(coalesce(v_from, '00000000-0000-0000-0000-000000000000'), p_after);
    -- citus: single server only
    select coalesce(array_agg(id), '{}')
      into v_ids
      from (select id
              from spectrum.raw_events
             where id >= v_from
               and status = 'pending'
               and id <> all (p_exclude)
             order by id
             limit p_limit
               for update skip locked) claimed;
  else
    v_start := floor(random() * cardinality(v_buckets))::integer;
    for i in 0 .. cardinality(v_buckets) - 1 loop
      v_bucket := v_buckets[1 + (v_start + i) % cardinality(v_buckets)];
      select floor into v_from from spectrum.pending_floor where bucket = v_bucket;
      v_from := coalesce(v_from, '00000000-0000-0000-0000-000000000000');
      select v_ids || coalesce(array_agg(id), '{}')
        into v_ids
        from (select id
                from spectrum.raw_events
               where bucket = v_bucket
                 and id >= v_from
                 and status = 'pending'
                 and id <> all (p_exclude)
               order by id
               limit p_limit - cardinality(v_ids)
                 for update skip locked) claimed;
      -- Several buckets fill one batch: a bucket holds a 32nd of the backlog.
      exit when cardinality(v_ids) >= p_limit;
    end loop;
  end if;
  return v_ids;
end
$$;

comment on function spectrum.claim_pending(integer, uuid[], uuid) is
  'Internal: locks and returns up to p_limit pending raw_events ids (FOR UPDATE SKIP LOCKED) in id order, from the pending floor or after p_after; on Citus, locking one bucket (shard) at a time.';

revoke all on function spectrum.claim_pending(integer, uuid[], uuid) from public;

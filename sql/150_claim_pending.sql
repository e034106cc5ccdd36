/*
 * claim_pending: the one place that claims work. Locks up to p_limit pending rows, oldest
 * first (received_at, then id), skipping rows another session holds (FOR UPDATE SKIP LOCKED)
 * and the ids in p_exclude (rows that already hit an unexpected error in this call). The locks
 * last until the caller's transaction ends. A sharded (Citus) deployment would replace this
 * with a per-account claim.
 *
 * The order is that of raw_events_unfinished_idx (status, received_at, id), which no other
 * index can give: ordered by id alone, the planner could walk the primary key through the done
 * rows whenever its statistics said most rows were pending (after a backlog was loaded), and
 * every batch of a long run rescanned all the rows done before it.
 */
create or replace function spectrum.claim_pending(p_limit integer, p_exclude uuid[] default '{}')
returns uuid[]
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(pg_catalog.array_agg(id), '{}')
    from (select id
            from spectrum.raw_events
           where status = 'pending'
             and id <> all (p_exclude)
           order by received_at, id
           limit p_limit
             for update skip locked) claimed
$$;

comment on function spectrum.claim_pending(integer, uuid[]) is
  'Internal: locks and returns up to p_limit pending raw_events ids (FOR UPDATE SKIP LOCKED), oldest received first.';

revoke all on function spectrum.claim_pending(integer, uuid[]) from public;

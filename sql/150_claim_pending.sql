/*
 * claim_pending: the one place that claims work (process_pending). Locks up to p_limit pending
 * rows, skipping locked ones and p_exclude (rows that raised earlier in the call), until the
 * caller's transaction ends; oldest first, the order of raw_events_unfinished_idx (see
 * 020_raw_events.sql).
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

/*
 * advance_pending_floor: raises a bucket's pending floor (see 022_pending_floor.sql) and returns
 * it. process_pending calls it at the start and the end of each call; any session may, it only
 * ever moves the floor to where no unfinished row can be below it.
 *
 * A candidate taken at instant t is spectrum.uuid_v7(t - 1 second): every id inserted later is
 * above it. Rows below it can still appear only from the transactions open at t (pg_locks holds
 * a virtual transaction id for each; autovacuum inserts nothing) or a prepared transaction.
 * When none of those remains, everything below the candidate is visible: the floor moves to the
 * first pending or processing row below the candidate, or to the candidate itself, and a new
 * candidate is taken. The floor's row lock orders this against a reprocess lowering the floor.
 */
create or replace function spectrum.advance_pending_floor(p_bucket integer default 0)
returns uuid
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_floor uuid;
  v_candidate uuid;
  v_vxids text[];
  v_first uuid;
begin
  select f.floor, f.candidate, f.candidate_vxids
    into v_floor, v_candidate, v_vxids
    from spectrum.pending_floor f
   where f.bucket = p_bucket
     for update;
  if not found then
    raise exception 'spectrum.pending_floor has no row for bucket %', p_bucket
      using hint = 'Buckets are 0 on a single server and spectrum.raw_buckets on Citus; '
                   || 'insert the missing row with floor ''00000000-0000-0000-0000-000000000000''.',
            errcode = '22023';
  end if;

  if v_candidate is not null
     and not exists (select from pg_catalog.pg_locks l
                      where l.locktype = 'virtualxid' and l.virtualxid = any (v_vxids))
     and not exists (select from pg_catalog.pg_prepared_xacts p
                      where p.database = pg_catalog.current_database()) then
    select r.id into v_first
      from spectrum.raw_events r
     where r.bucket = p_bucket
       and r.id >= v_floor and r.id < v_candidate
       and r.status in ('pending', 'processing')
     order by r.id
     limit 1;
    v_floor := coalesce(v_first, v_candidate);
    v_candidate := null;
  end if;

  if v_candidate is null then
    v_candidate := greatest(v_floor, spectrum.uuid_v7(pg_catalog.clock_timestamp() - interval '1 second'));
    -- Read after the instant above: a transaction that starts later inserts above the candidate.
    select coalesce(pg_catalog.array_agg(l.virtualxid), '{}')
      into v_vxids
      from pg_catalog.pg_locks l
      left join pg_catalog.pg_stat_activity a on a.pid = l.pid
     where l.locktype = 'virtualxid' and l.granted
       -- Kept unless known to be elsewhere or autovacuum (a role may see nulls for others).
       and coalesce(a.datname = pg_catalog.current_database(), true)
       and a.backend_type is distinct from 'autovacuum worker';
  end if;

  update spectrum.pending_floor
     set floor = v_floor, candidate = v_candidate, candidate_vxids = v_vxids
   where bucket = p_bucket;
  return v_floor;
end
$$;

comment on function spectrum.advance_pending_floor(integer) is
  'Raises the pending floor of a bucket (0 on a single server) as far as is safe and returns it; called by process_pending at the start and end of each call.';

revoke all on function spectrum.advance_pending_floor(integer) from public;

/*
 * recount_status: a DBA's repair of spectrum.status_totals after drift the triggers cannot see;
 * returns the done count. Exact in READ COMMITTED: it locks the counters before counting, so each
 * batch adds wholly before or after the count (and waits out the full scan). It also lowers
 * spectrum.pending_floor to the first unfinished row, should one be below it (an id supplied at
 * insert, older than its transaction: see 022_pending_floor.sql).
 */
create or replace function spectrum.recount_status()
returns bigint
language plpgsql
volatile
as $$
declare
  v_done bigint;
  v_failed bigint;
  v_floor uuid;
begin
  insert into spectrum.status_totals (status, events) values ('done', 0), ('failed', 0) on conflict do nothing;
  perform from spectrum.status_totals where status in ('done', 'failed') order by status for update;
  select count(*) filter (where status = 'done'), count(*) filter (where status = 'failed')
    into v_done, v_failed
    from spectrum.raw_events;
  select id into v_floor from spectrum.raw_events where status = 'done' order by id limit 1;
  update spectrum.pending_floor f
     set floor = u.first
    from (select distinct on (r.bucket) r.bucket, r.id as first
            from spectrum.raw_events r
           where r.status in ('pending', 'processing')
           order by r.bucket, r.id) u
   where f.bucket = u.bucket and f.floor > u.first;
  update spectrum.status_totals
     set events = case status when 'done' then v_done else v_failed end,
         id_floor = case when status = 'done' and v_floor is not null then v_floor
                         else '00000000-0000-0000-0000-000000000000' end
   where status in ('done', 'failed');
  return v_done;
end
$$;

comment on function spectrum.recount_status() is
  'Recounts the done and failed raw_events rows into spectrum.status_totals (repairs a drifted pipeline_status), lowers spectrum.pending_floor below any unfinished row, and returns the done count. Locks the counters while it counts.';

revoke all on function spectrum.recount_status() from public;

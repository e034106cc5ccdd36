/*
 * recount_status: rebuilds spectrum.status_totals (the done and failed counts, and the done
 * id_floor) from the rows, for when it has drifted (rows set from pending to done or failed by
 * hand, rows inserted already done or failed, a restore that bypassed the triggers). Called by
 * a DBA from psql: `select spectrum.recount_status();`. Returns the done count.
 *
 * Exact under concurrency (in READ COMMITTED, the default): it first locks the counter rows
 * (in status order, as every writer does), so a pipeline batch that already added to them has
 * committed before the count starts (the count sees its rows) and a batch that has not yet
 * added to them waits and adds after (the count did not see its rows). It reads every row (a
 * full scan: seconds on tens of millions of rows), and batches wait for it meanwhile.
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
  update spectrum.status_totals
     set events = case status when 'done' then v_done else v_failed end,
         id_floor = case when status = 'done' and v_floor is not null then v_floor
                         else '00000000-0000-0000-0000-000000000000' end
   where status in ('done', 'failed');
  return v_done;
end
$$;

comment on function spectrum.recount_status() is
  'Recounts the done and failed raw_events rows into spectrum.status_totals (repairs a drifted pipeline_status) and returns the done count. Locks the counters while it counts.';

revoke all on function spectrum.recount_status() from public;

/*
 * recount_status: rebuilds the done counter of spectrum.status_totals from the rows, for when
 * it has drifted (rows set from pending to done by hand, or a restore that bypassed the
 * triggers). Called by a DBA from psql: `select spectrum.recount_status();`.
 *
 * Exact under concurrency (in READ COMMITTED, the default): it first locks the counter row, so
 * a pipeline batch that already added to it has committed before the count starts (the count
 * sees its rows) and a batch that has not yet added to it waits and adds after (the count did
 * not see its rows). It counts every done row (a full scan: seconds on tens of millions of
 * rows), and batches wait for it meanwhile.
 */
create or replace function spectrum.recount_status()
returns bigint
language plpgsql
volatile
as $$
declare
  v_done bigint;
begin
  insert into spectrum.status_totals (status, events) values ('done', 0) on conflict do nothing;
  perform from spectrum.status_totals where status = 'done' for update;
  select count(*) into v_done from spectrum.raw_events where status = 'done';
  update spectrum.status_totals set events = v_done where status = 'done';
  return v_done;
end
$$;

comment on function spectrum.recount_status() is
  'Recounts the done raw_events rows into spectrum.status_totals (repairs a drifted pipeline_status) and returns the count. Locks the counter while it counts.';

revoke all on function spectrum.recount_status() from public;

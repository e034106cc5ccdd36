/*
 * pipeline_status: how many raw events are in each status, and the oldest received_at of
 * each. Fast on tens of millions of rows: pending, processing and failed are counted from the
 * partial index raw_events_unfinished_idx (which holds only rows not done), and done comes
 * from the running total in spectrum.status_totals, so the done bulk is never scanned.
 * The seed's `select status, count(*) from spectrum.raw_events group by 1` gives the same
 * counts, slowly.
 */
create or replace view spectrum.pipeline_status as
with unfinished as (
  select status, count(*) as events, min(received_at) as oldest_received_at
    from spectrum.raw_events
   where status <> 'done'
   group by status
)
select s.status,
       coalesce(u.events, t.events, 0)::bigint as events,
       case when s.status = 'done'
            then (select r.received_at from spectrum.raw_events r where r.status = 'done' order by r.id limit 1)
            else u.oldest_received_at end as oldest_received_at
  from (values (1, 'pending'), (2, 'processing'), (3, 'done'), (4, 'failed')) as s(ord, status)
  left join unfinished u on u.status = s.status
  left join spectrum.status_totals t on t.status = s.status and s.status = 'done'
 order by s.ord;

comment on view spectrum.pipeline_status is
  'Events per status (pending, processing, done, failed) with the oldest received_at of each; reads only rows not done plus a running total, so it stays fast on tens of millions of rows.';

grant select on spectrum.pipeline_status to spectrum_operator;

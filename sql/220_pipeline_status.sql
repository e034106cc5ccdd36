/*
 * pipeline_status: events and oldest received_at per status, an operator's first look. Counts only
 * pending and processing, from the pending floor on (see 022_pending_floor.sql); done and failed
 * come from status_totals (see 031_status_totals.sql), the oldest failed row from the errors index.
 */
create or replace view spectrum.pipeline_status as
with unfinished as (
  select status, count(*) as events, min(received_at) as oldest_received_at
    from spectrum.raw_events
   where id >= (select f.floor from spectrum.pending_floor f order by f.floor limit 1)
     and status in ('pending', 'processing')
   group by status
), oldest_done as (
  select r.received_at
    from spectrum.raw_events r
   where r.status = 'done'
     and r.id >= (select t.id_floor from spectrum.status_totals t where t.status = 'done')
   order by r.id
   limit 1
), oldest_failed as (
  select r.received_at
    from spectrum.raw_events r
   where r.error_msg is not null and r.status = 'failed'
   order by r.received_at, r.id
   limit 1
)
-- The probes are uncorrelated (a distributed table cannot be probed per row of a VALUES list).
select s.status,
       coalesce(u.events, t.events, 0)::bigint as events,
       case s.status
         when 'done' then (select received_at from oldest_done)
         when 'failed' then (select received_at from oldest_failed)
         else u.oldest_received_at
       end as oldest_received_at
  from (values (1, 'pending'), (2, 'processing'), (3, 'done'), (4, 'failed')) as s(ord, status)
  left join unfinished u on u.status = s.status
  left join spectrum.status_totals t on t.status = s.status and s.status in ('done', 'failed')
 order by s.ord;

comment on view spectrum.pipeline_status is
  'Events per status (pending, processing, done, failed) with the oldest received_at of each; counts only the pending and processing rows and reads running totals for done and failed, so it stays fast on tens of millions of rows.';

grant select on spectrum.pipeline_status to spectrum_operator;

/*
 * pipeline_status: how many raw events are in each status, and the oldest received_at of
 * each. Fast on tens of millions of rows, however many failed rows have piled up:
 *   - pending and processing are counted from the partial index raw_events_unfinished_idx
 *     (rows not done; pending and processing are few when the pipeline keeps up);
 *   - done and failed come from the running totals in spectrum.status_totals, so neither the
 *     done bulk nor the failed rows (kept forever) are ever counted;
 *   - the oldest failed row is the first failed entry of raw_events_unfinished_idx
 *     (status, received_at, id): one index probe;
 *   - the oldest done row is the first done row in id order, searched from
 *     status_totals.id_floor (no done row has a smaller id). With time-ordered ids (the
 *     default, uuid_v7 of the insert time) id order is received order. A stored oldest
 *     received_at instead would need the min of every batch's done rows (table probes on the
 *     hot path) and could only go stale after deletes; a floor only has to be lowered, with
 *     the batch's smallest claimed id (in memory), and maintenance raises it to the first done
 *     row after retention, so the search starts right past the old failed rows that retention
 *     keeps: no walk past them. Rows with ids that are not time-ordered (imports) can make
 *     the done oldest differ from the true minimum; the counts stay exact.
 * The seed's `select status, count(*) from spectrum.raw_events group by 1` gives the same
 * counts, slowly.
 */
create or replace view spectrum.pipeline_status as
with unfinished as (
  select status, count(*) as events, min(received_at) as oldest_received_at
    from spectrum.raw_events
   where status in ('pending', 'processing')
   group by status
)
select s.status,
       coalesce(u.events, t.events, 0)::bigint as events,
       case s.status
         when 'done' then (select r.received_at from spectrum.raw_events r
                            where r.status = 'done' and r.id >= t.id_floor
                            order by r.id limit 1)
         when 'failed' then (select r.received_at from spectrum.raw_events r
                              where r.status = 'failed'
                              order by r.received_at, r.id limit 1)
         else u.oldest_received_at
       end as oldest_received_at
  from (values (1, 'pending'), (2, 'processing'), (3, 'done'), (4, 'failed')) as s(ord, status)
  left join unfinished u on u.status = s.status
  left join spectrum.status_totals t on t.status = s.status and s.status in ('done', 'failed')
 order by s.ord;

comment on view spectrum.pipeline_status is
  'Events per status (pending, processing, done, failed) with the oldest received_at of each; counts only the pending and processing rows and reads running totals for done and failed, so it stays fast on tens of millions of rows.';

grant select on spectrum.pipeline_status to spectrum_operator;

/*
 * reprocess_progress: the runs of spectrum.reprocess_in_chunks as an operator reads them: running
 * (a session holds the run's advisory lock, taken by each of its chunks), interrupted (stopped
 * before the end: resume it) or finished, with the filters in the words of a CALL.
 */
create or replace view spectrum.reprocess_progress as
select r.run_id,
       case when r.finished_at is not null then 'finished'
            when exists (select from pg_catalog.pg_locks l
                          where l.locktype = 'advisory' and l.granted and l.objsubid = 2
                            and l.database = (select d.oid from pg_catalog.pg_database d
                                               where d.datname = pg_catalog.current_database())
                            and l.classid = pg_catalog.hashtext('spectrum.reprocess_runs')::oid
                            and l.objid = r.run_id::integer::oid) then 'running'
            else 'interrupted'
       end as state,
       r.requeued,
       r.matched,
       pg_catalog.round(100.0 * r.requeued / greatest(r.matched, 1), 1) as percent,
       r.chunks,
       r.chunk_size,
       r.lock_timeouts,
       r.after_id,
       r.started_at,
       r.started_by,
       r.last_chunk_at,
       r.finished_at,
       pg_catalog.concat_ws(', ',
         'status => ' || pg_catalog.quote_literal(r.status),
         'ids => ' || pg_catalog.quote_literal(r.ids::text),
         'received_after => ' || pg_catalog.quote_literal(r.received_after::text),
         'received_before => ' || pg_catalog.quote_literal(r.received_before::text),
         'event_type => ' || pg_catalog.quote_literal(r.event_type),
         'account_id => ' || pg_catalog.quote_literal(r.account_id::text)) as filters
  from spectrum.reprocess_runs r;

comment on view spectrum.reprocess_progress is
  'The runs of spectrum.reprocess_in_chunks: state (running, interrupted: resume it with CALL spectrum.reprocess_in_chunks(run_id => …), finished), rows re-queued of those matched at the start, chunks, the cursor after_id, and the filters as a CALL names them.';

grant select on spectrum.reprocess_progress to spectrum_operator;

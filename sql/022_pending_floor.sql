/*
 * pending_floor: where the claim starts. No raw_events row of a bucket that is pending or
 * processing has an id below its floor, so claims, pipeline_status and health find unfinished
 * rows by a primary-key range from the floor, with no index on status: marking a row done
 * touches no index but the primary key (see 020_raw_events.sql).
 *
 * Who moves it:
 *  - spectrum.advance_pending_floor raises it, at the start and end of each process_pending
 *    call, in two steps: it first records a candidate (an id below everything inserted from now
 *    on) with the transactions then open in this database; once all of those have ended, no
 *    row below the candidate can still appear, and the floor moves to the first unfinished row
 *    below it, or to the candidate.
 *  - the status_totals trigger lowers it when a row goes back to pending or processing (a DBA,
 *    spectrum.reprocess); spectrum.recount_status lowers it to the first unfinished row.
 * Ids are raw_events' default (spectrum.uuid_v7 of the insert time): an id supplied at insert
 * that is older than its transaction is below the floor until recount_status (docs/operate.md).
 * One row per bucket: bucket 0 on a single server, one per spectrum.raw_buckets on Citus.
 */
create table if not exists spectrum.pending_floor (
  bucket integer not null,
  floor uuid not null default '00000000-0000-0000-0000-000000000000',
  candidate uuid,
  candidate_vxids text[],
  constraint pending_floor_pkey primary key (bucket)
);

-- The first floor: the first unfinished row, or lower where a transaction open now began earlier
-- (its rows are not visible yet); the nil uuid where that cannot be read (a role that does not
-- see other sessions' xact_start). One scan of raw_events, when the table is first made.
insert into spectrum.pending_floor (bucket, floor)
select 0, case when pg_catalog.pg_has_role('pg_read_all_stats', 'usage')
               then least((select r.id from spectrum.raw_events r
                            where r.status in ('pending', 'processing') order by r.id limit 1),
                          spectrum.uuid_v7(coalesce(min(a.xact_start), now()) - interval '1 second'))
               else '00000000-0000-0000-0000-000000000000' end
  from pg_catalog.pg_stat_activity a
 where a.datname = pg_catalog.current_database()
on conflict do nothing;

comment on table spectrum.pending_floor is 'Per bucket: no pending or processing raw_events row has an id below floor; claims and counts of unfinished rows start there.';
comment on column spectrum.pending_floor.bucket is 'raw_events.bucket: 0 on a single server.';
comment on column spectrum.pending_floor.floor is 'No pending or processing row of the bucket has a smaller id.';
comment on column spectrum.pending_floor.candidate is 'The next floor, once the transactions in candidate_vxids have ended; null when none is waiting.';
comment on column spectrum.pending_floor.candidate_vxids is 'The transactions open in this database when candidate was taken (pg_locks virtual transaction ids).';

grant select on spectrum.pending_floor to spectrum_operator;
grant select, update on spectrum.pending_floor to spectrum_definer;

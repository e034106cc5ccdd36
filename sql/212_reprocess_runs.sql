/*
 * reprocess_runs: one row per CALL spectrum.reprocess_in_chunks: its filters, how many rows they
 * matched when it started, and how far it got. Each chunk commits its progress with its rows, so
 * a run stopped at any instant resumes after after_id without resetting a row twice. Written only
 * by spectrum.reprocess_start and spectrum.reprocess_chunk; spectrum.reprocess_progress reads it.
 */
create table if not exists spectrum.reprocess_runs (
  run_id bigint generated always as identity,
  started_at timestamptz not null,
  started_by text not null,
  status text,
  ids uuid[],
  received_after timestamptz,
  received_before timestamptz,
  event_type text,
  account_id uuid,
  chunk_size integer not null,
  matched bigint not null,
  requeued bigint not null default 0,
  chunks integer not null default 0,
  lock_timeouts integer not null default 0,
  after_id uuid not null default '00000000-0000-0000-0000-000000000000',
  in_flight_at_start xid8[] not null default '{}',
  last_chunk_at timestamptz,
  finished_at timestamptz,
  constraint reprocess_runs_pkey primary key (run_id),
  constraint reprocess_runs_chunk_size_check check (chunk_size > 0)
);

comment on table spectrum.reprocess_runs is 'One row per CALL spectrum.reprocess_in_chunks: the filters, the rows they matched at the start, the rows re-queued so far and the id the run has reached; progress commits with each chunk. See spectrum.reprocess_progress.';
comment on column spectrum.reprocess_runs.started_by is 'The session user that started the run.';
comment on column spectrum.reprocess_runs.status is 'Filter: the status of the rows to re-queue (null: any but pending).';
comment on column spectrum.reprocess_runs.ids is 'Filter: these raw_events ids.';
comment on column spectrum.reprocess_runs.received_after is 'Filter: received_at >= received_after.';
comment on column spectrum.reprocess_runs.received_before is 'Filter: received_at < received_before.';
comment on column spectrum.reprocess_runs.event_type is 'Filter: the payload''s event_type.';
comment on column spectrum.reprocess_runs.account_id is 'Filter: the payload''s account_id.';
comment on column spectrum.reprocess_runs.chunk_size is 'Rows re-queued per committed chunk, at most.';
comment on column spectrum.reprocess_runs.matched is 'Rows the filters matched when the run started.';
comment on column spectrum.reprocess_runs.requeued is 'Rows re-queued so far (committed).';
comment on column spectrum.reprocess_runs.chunks is 'Chunks committed so far.';
comment on column spectrum.reprocess_runs.lock_timeouts is 'Chunks rolled back and retried because a row or a counter stayed locked past the lock timeout.';
comment on column spectrum.reprocess_runs.after_id is 'Cursor: every raw_events id up to this one has been dealt with; a resume continues after it.';
comment on column spectrum.reprocess_runs.in_flight_at_start is 'Internal: the transactions in flight when the run started; its chunks start once they have all ended.';
comment on column spectrum.reprocess_runs.last_chunk_at is 'When the last chunk committed.';
comment on column spectrum.reprocess_runs.finished_at is 'When the run reached the end of raw_events; null while running or interrupted.';

grant select on spectrum.reprocess_runs to spectrum_operator;
grant select, insert, update on spectrum.reprocess_runs to spectrum_definer;

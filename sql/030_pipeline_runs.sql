/*
 * pipeline_runs: one row per CALL spectrum.process_pending(), written as it goes (each batch
 * commits its counts), so a run that is still going or that died shows finished_at null.
 */
create table if not exists spectrum.pipeline_runs (
  run_id bigint generated always as identity,
  started_at timestamptz not null,
  finished_at timestamptz,
  batches integer not null default 0,
  claimed bigint not null default 0,
  done bigint not null default 0,
  failed bigint not null default 0,
  retried bigint not null default 0,
  superseded bigint not null default 0,
  stopped_because text,
  constraint pipeline_runs_pkey primary key (run_id)
);

create index if not exists pipeline_runs_started_at_idx on spectrum.pipeline_runs (started_at);

comment on table spectrum.pipeline_runs is 'One row per process_pending call: start, end, and counts of claimed, done, failed, retried (unexpected error, left pending) and superseded (an older version of an event already processed).';
comment on column spectrum.pipeline_runs.stopped_because is 'Why the call ended: no pending rows, time budget, batch limit, or contention.';

grant select on spectrum.pipeline_runs to spectrum_operator;

/*
 * maintenance_runs: one row per spectrum.maintenance run, written as it goes (a dead run shows
 * finished_at null); pg_cron keeps no notices, so this is where an operator sees what it did.
 */
create table if not exists spectrum.maintenance_runs (
  run_id bigint generated always as identity,
  started_at timestamptz not null,
  finished_at timestamptz,
  partitions_created integer not null default 0,
  raw_deleted bigint not null default 0,
  cron_details_deleted bigint,
  note text,
  constraint maintenance_runs_pkey primary key (run_id)
);

create index if not exists maintenance_runs_started_at_idx on spectrum.maintenance_runs (started_at);

comment on table spectrum.maintenance_runs is 'One row per spectrum.maintenance call: fact partitions created, done raw rows deleted by retention, cron.job_run_details rows pruned.';
comment on column spectrum.maintenance_runs.finished_at is 'Null while the run is going, or when it died.';
comment on column spectrum.maintenance_runs.raw_deleted is 'Done raw_events rows older than the retention deleted so far (committed chunk by chunk).';
comment on column spectrum.maintenance_runs.cron_details_deleted is 'cron.job_run_details rows pruned; null when pg_cron''s tables are not in this database (see note).';
comment on column spectrum.maintenance_runs.note is 'Why a step was skipped, if one was.';

grant select on spectrum.maintenance_runs to spectrum_operator;

/*
 * maintenance_runs: one row per CALL spectrum.maintenance() that got to work, written as it
 * goes (each step commits), so a run that died shows finished_at null. pg_cron keeps only the
 * command tag of a job, not its notices: this table is where an operator sees what the hourly
 * maintenance did. Rows older than the run history age (p_cron_history) are pruned by
 * maintenance itself.
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

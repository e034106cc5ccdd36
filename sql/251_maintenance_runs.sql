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

-- Columns added after the first release go last, in the same order on new and old databases.
alter table spectrum.maintenance_runs
  add column if not exists fact_retention_months integer,
  add column if not exists partitions_detached integer not null default 0,
  add column if not exists partitions_dropped integer not null default 0,
  add column if not exists partitions_overdue integer;

create index if not exists maintenance_runs_started_at_idx on spectrum.maintenance_runs (started_at);

comment on table spectrum.maintenance_runs is 'One row per spectrum.maintenance call: fact partitions created, detached and dropped, done raw rows deleted by retention, cron.job_run_details rows pruned.';
comment on column spectrum.maintenance_runs.finished_at is 'Null while the run is going, or when it died.';
comment on column spectrum.maintenance_runs.raw_deleted is 'Done raw_events rows older than the retention deleted so far (committed chunk by chunk).';
comment on column spectrum.maintenance_runs.cron_details_deleted is 'cron.job_run_details rows pruned; null when pg_cron''s tables are not in this database (see note).';
comment on column spectrum.maintenance_runs.note is 'Why a step was skipped, if one was.';
comment on column spectrum.maintenance_runs.fact_retention_months is 'spectrum.settings.fact_retention_months when the run read it; null: facts kept forever.';
comment on column spectrum.maintenance_runs.partitions_detached is 'Fact partitions older than the retention detached (see spectrum.detached_fact_partitions).';
comment on column spectrum.maintenance_runs.partitions_dropped is 'Detached fact partitions dropped, fact_drop_after after they were detached.';
comment on column spectrum.maintenance_runs.partitions_overdue is 'Fact partitions older than the retention still attached when the run ended (busy: the next run retries); null when retention is off.';

grant select on spectrum.maintenance_runs to spectrum_operator, spectrum_definer;

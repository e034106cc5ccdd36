/*
 * scheduled_jobs: the pg_cron jobs this database expects, as applySchedule (scripts/lib/
 * schedule.ts) last applied them from sql/schedule.json, which SQL cannot read. spectrum.health
 * checks each against cron.job and cron.job_run_details. Written only by applySchedule.
 */
create table if not exists spectrum.scheduled_jobs (
  name text not null,
  schedule text not null,
  command text not null,
  cron_database text not null,
  applied_at timestamptz not null default now(),
  constraint scheduled_jobs_pkey primary key (name)
);

comment on table spectrum.scheduled_jobs is 'The pg_cron jobs this database expects, as npm run migrate last applied them from sql/schedule.json; spectrum.health checks each one.';
comment on column spectrum.scheduled_jobs.name is 'The job''s name in cron.job (jobname).';
comment on column spectrum.scheduled_jobs.cron_database is 'The database of the cluster where pg_cron keeps its jobs (cron.database_name); the job runs in this one.';
comment on column spectrum.scheduled_jobs.applied_at is 'When this schedule and command were applied (unchanged by a run that changed nothing).';

grant select on spectrum.scheduled_jobs to spectrum_operator, spectrum_definer;

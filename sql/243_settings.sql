/*
 * settings: the one row of options a DBA changes in psql, read by spectrum.maintenance (and
 * spectrum.health) on every run: UPDATE spectrum.settings SET fact_retention_months = 24.
 */
create table if not exists spectrum.settings (
  id boolean not null default true,
  fact_retention_months integer,
  fact_drop_after interval default '7 days',
  constraint settings_pkey primary key (id),
  constraint settings_one_row check (id),
  constraint settings_fact_retention_months check (fact_retention_months >= 1),
  constraint settings_fact_drop_after check (fact_drop_after >= interval '0')
);

insert into spectrum.settings (id) values (true) on conflict do nothing;

comment on table spectrum.settings is 'One row of options read by spectrum.maintenance on every run; change them with UPDATE.';
comment on column spectrum.settings.id is 'Always true: the table has one row.';
comment on column spectrum.settings.fact_retention_months is 'Fact partitions are kept for this month and this many before it; older ones are detached by spectrum.maintenance. Null (the default): kept forever.';
comment on column spectrum.settings.fact_drop_after is 'How long a detached fact partition is kept (to archive it) before spectrum.maintenance drops it. Null: never dropped.';

grant select on spectrum.settings to spectrum_operator, spectrum_definer;

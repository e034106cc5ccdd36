/*
 * detached_fact_partitions: the fact partitions that spectrum.maintenance detached for
 * retention, under their new names, until and after it drops them (dropped_at).
 */
create table if not exists spectrum.detached_fact_partitions (
  table_name text not null,
  range_from timestamptz not null,
  range_to timestamptz not null,
  detached_at timestamptz not null,
  dropped_at timestamptz,
  constraint detached_fact_partitions_pkey primary key (table_name)
);

comment on table spectrum.detached_fact_partitions is 'Fact partitions detached by spectrum.maintenance (settings.fact_retention_months): standalone tables of schema spectrum until dropped_at (settings.fact_drop_after).';
comment on column spectrum.detached_fact_partitions.table_name is 'Its name in schema spectrum since it was detached: the partition''s name, _detached_ and when.';
comment on column spectrum.detached_fact_partitions.range_from is 'The facts it holds occurred at or after this (its partition bound).';
comment on column spectrum.detached_fact_partitions.range_to is 'The facts it holds occurred before this.';
comment on column spectrum.detached_fact_partitions.dropped_at is 'When maintenance dropped it; null while it is kept.';

grant select on spectrum.detached_fact_partitions to spectrum_operator, spectrum_definer;

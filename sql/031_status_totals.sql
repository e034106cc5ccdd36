/*
 * status_totals: the running counts of done and failed raw rows, so spectrum.pipeline_status
 * never counts either (done is the bulk: tens of millions of rows; failed rows are kept
 * forever and pile up). The pipeline adds each batch's done and failed rows as it commits;
 * triggers on raw_events follow rows that leave or enter done or failed otherwise (a DBA's
 * UPDATE or DELETE, spectrum.reprocess, retention, TRUNCATE); spectrum.recount_status()
 * rebuilds both from scratch.
 *
 * id_floor (done row only): no done row has an id below it, so pipeline_status looks for the
 * first done row from there instead of walking the primary key past every old failed row.
 * Lowered (least) by whatever makes a row done: pipeline batches, the triggers; raised by
 * spectrum.maintenance after retention and by recount_status, to the first done row's id.
 * The nil uuid is always right (it only costs the walk).
 */
create table if not exists spectrum.status_totals (
  status text not null,
  events bigint not null default 0,
  constraint status_totals_pkey primary key (status)
);

alter table spectrum.status_totals
  add column if not exists id_floor uuid not null default '00000000-0000-0000-0000-000000000000';

insert into spectrum.status_totals (status, events) values ('done', 0) on conflict do nothing;
-- Created with the failed rows already there (an upgrade): counted from the partial index of
-- rows not done, which holds them all.
insert into spectrum.status_totals (status, events)
select 'failed', count(*) from spectrum.raw_events where status = 'failed'
on conflict do nothing;

comment on table spectrum.status_totals is 'Running counts of raw_events rows that are done and failed (see spectrum.pipeline_status).';
comment on column spectrum.status_totals.events is 'How many raw_events rows have this status.';
comment on column spectrum.status_totals.id_floor is 'done only: no done row has a smaller id; pipeline_status starts its search for the oldest done row here.';

grant select on spectrum.status_totals to spectrum_operator;
grant select, update on spectrum.status_totals to spectrum_definer;

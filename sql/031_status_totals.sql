/*
 * status_totals: running done and failed counts, so spectrum.pipeline_status never counts them.
 * Every writer (process_pending, the 032 triggers, recount_status) locks both rows in status
 * order, done then failed, so no two deadlock on the pair.
 * id_floor (done row): no done row has a smaller id, so pipeline_status seeks the oldest done row
 * from there, not past every old failed row. Batches lower it to their least claimed id (no table
 * probe, unlike a stored oldest); maintenance and recount_status raise it. The nil uuid is always
 * correct, only slow.
 */
create table if not exists spectrum.status_totals (
  status text not null,
  events bigint not null default 0,
  constraint status_totals_pkey primary key (status)
);

alter table spectrum.status_totals
  add column if not exists id_floor uuid not null default '00000000-0000-0000-0000-000000000000';

insert into spectrum.status_totals (status, events) values ('done', 0) on conflict do nothing;
insert into spectrum.status_totals (status, events)
select 'failed', count(*) from spectrum.raw_events where status = 'failed'
on conflict do nothing;

comment on table spectrum.status_totals is 'Running counts of raw_events rows that are done and failed (see spectrum.pipeline_status).';
comment on column spectrum.status_totals.events is 'How many raw_events rows have this status.';
comment on column spectrum.status_totals.id_floor is 'done only: no done row has a smaller id; pipeline_status starts its search for the oldest done row here.';

grant select on spectrum.status_totals to spectrum_operator;
grant select, update on spectrum.status_totals to spectrum_definer;

/*
 * status_totals: the running count of done raw rows, so spectrum.pipeline_status never counts
 * the done bulk (tens of millions of rows). The pipeline adds to it as rows become done;
 * triggers on raw_events subtract as done rows are deleted, truncated or reset by hand;
 * spectrum.recount_status() rebuilds it from scratch.
 */
create table if not exists spectrum.status_totals (
  status text not null,
  events bigint not null default 0,
  constraint status_totals_pkey primary key (status)
);

insert into spectrum.status_totals (status, events) values ('done', 0) on conflict do nothing;

comment on table spectrum.status_totals is 'Running count of raw_events rows that are done (see spectrum.pipeline_status).';

grant select on spectrum.status_totals to spectrum_operator;
grant select, update on spectrum.status_totals to spectrum_definer;

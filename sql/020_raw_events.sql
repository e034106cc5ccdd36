/*
 * raw_events: every event lands here first, untouched. Producers insert payload only (INSERT
 * or COPY); nothing but "is a JSON object" is checked at insert, so no event is refused for
 * its content. spectrum.process_pending interprets rows later and records the outcome.
 */
create table if not exists spectrum.raw_events (
  id uuid not null default spectrum.uuid_v7(),
  payload jsonb not null,
  received_at timestamptz not null default now(),
  status text not null default 'pending',
  processed_at timestamptz,
  error_msg text,
  attempts integer not null default 0,
  constraint raw_events_pkey primary key (id),
  constraint raw_events_payload_is_object check (jsonb_typeof(payload) = 'object'),
  constraint raw_events_status_check check (status in ('pending', 'processing', 'done', 'failed'))
);

-- Everything not yet done, by status, oldest first: the claim reads pending rows in this order
-- (spectrum.claim_pending), and pipeline_status counts the small statuses and finds their
-- oldest received_at from it without touching the done bulk. An earlier shape (status, id)
-- is replaced: ordered by id, the claim could be planned on the primary key instead.
do $$
begin
  if exists (select from pg_catalog.pg_indexes
              where schemaname = 'spectrum' and indexname = 'raw_events_unfinished_idx'
                and indexdef not like '%(status, received_at, id) WHERE (status <> ''done''::text)') then
    drop index spectrum.raw_events_unfinished_idx;
  end if;
end
$$;
create index if not exists raw_events_unfinished_idx
  on spectrum.raw_events (status, received_at, id)
  where status <> 'done';

-- No parallel scans of raw_events: pipeline_status counts a backlog of 100k pending rows in
-- about 14 ms in one process, but the planner sends that count to two workers whose start-up
-- on a busy two-core server took it to 22-51 ms (npm run bench, 10M rows). The pipeline's own
-- reads go by id and gain nothing from workers either.
alter table spectrum.raw_events set (parallel_workers = 0);

comment on table spectrum.raw_events is 'Staging: every event as received (payload untouched), with its processing status. Producers insert payload only.';
comment on column spectrum.raw_events.id is 'Time-ordered uuid (spectrum.uuid_v7) unless the producer supplies one.';
comment on column spectrum.raw_events.payload is 'The event exactly as sent; must be a JSON object.';
comment on column spectrum.raw_events.received_at is 'When the row was inserted.';
comment on column spectrum.raw_events.status is 'pending, processing, done or failed.';
comment on column spectrum.raw_events.processed_at is 'When the pipeline last recorded an outcome for this row.';
comment on column spectrum.raw_events.error_msg is 'Why the event failed (field and problem), or the last unexpected error while it is retried.';
comment on column spectrum.raw_events.attempts is 'How many times the pipeline has tried this row since it was last reset.';

grant insert (payload) on spectrum.raw_events to spectrum_producer;
grant select on spectrum.raw_events to spectrum_operator;
grant select, update (status, processed_at, error_msg, attempts) on spectrum.raw_events to spectrum_definer;

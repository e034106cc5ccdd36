/*
 * raw_events: every event lands here first, untouched. Producers insert payload only, and only
 * "is a JSON object" is checked, so no event is refused for its content.
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

-- Citus distributes raw_events by bucket, one value per shard, assigned at insert (see
-- 021_raw_buckets.sql); on a single server every row is in bucket 0.
alter table spectrum.raw_events add column if not exists bucket integer not null default 0;

-- No index mentions status, processed_at or attempts: marking a row done then adds an entry to
-- the primary key only. Unfinished rows are found by a primary-key range from
-- spectrum.pending_floor (022_pending_floor.sql). The index these replace was on status.
-- No fillfactor: room kept on each page would make the update HOT, but inserts stop at the
-- fillfactor for good, and this table holds every raw event (bench-results/README.md).
drop index if exists spectrum.raw_events_unfinished_idx;
alter table spectrum.raw_events reset (fillfactor);

-- Failed rows, and retried ones, by when they came: failure_reasons, pipeline_status, reprocess.
-- A done row's error_msg stays null, an unchanged value: its update adds no entry here.
create index if not exists raw_events_errors_idx
  on spectrum.raw_events (received_at, id)
  where error_msg is not null;

-- A failed row always says why: raw_events_errors_idx then holds every failed row.
do $$
begin
  if not exists (select from pg_catalog.pg_constraint
                  where conrelid = 'spectrum.raw_events'::regclass and conname = 'raw_events_failed_has_reason') then
    alter table spectrum.raw_events
      add constraint raw_events_failed_has_reason check (status <> 'failed' or error_msg is not null);
  end if;
end
$$;

-- No parallel scans: worker start-up costs pipeline_status's backlog count more than it saves
-- (see bench-results/README.md), and the pipeline's own reads go by id.
alter table spectrum.raw_events set (parallel_workers = 0);

comment on table spectrum.raw_events is 'Staging: every event as received (payload untouched), with its processing status. Producers insert payload only.';
comment on column spectrum.raw_events.id is 'Time-ordered uuid (spectrum.uuid_v7) unless the producer supplies one.';
comment on column spectrum.raw_events.payload is 'The event exactly as sent; must be a JSON object.';
comment on column spectrum.raw_events.received_at is 'When the row was inserted.';
comment on column spectrum.raw_events.status is 'pending, processing, done or failed.';
comment on column spectrum.raw_events.processed_at is 'When the pipeline last recorded an outcome for this row.';
comment on column spectrum.raw_events.error_msg is 'Why the event failed (field and problem), or the last unexpected error while it is retried.';
comment on column spectrum.raw_events.bucket is 'Citus: the shard group the row was assigned to at insert; 0 on a single server.';
comment on column spectrum.raw_events.attempts is 'How many times the pipeline has tried this row since it was last reset.';

grant insert (payload) on spectrum.raw_events to spectrum_producer;
grant select on spectrum.raw_events to spectrum_operator;
grant select, update (status, processed_at, error_msg, attempts) on spectrum.raw_events to spectrum_definer;

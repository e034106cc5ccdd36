/*
 * event_registry: keeps facts exactly-once (process_claimed): only a later version of an event
 * replaces its fact, the ON CONFLICT on event_id serialises batches carrying one event, and
 * prev_* locate the replaced fact, which may lie in another account or month.
 */
create table if not exists spectrum.event_registry (
  event_id uuid not null,
  raw_event_id uuid not null,
  received_at timestamptz not null,
  account_id uuid not null,
  occurred_at timestamptz not null,
  prev_account_id uuid,
  prev_occurred_at timestamptz,
  constraint event_registry_pkey primary key (event_id)
);

comment on table spectrum.event_registry is 'Internal: for each event_id, the raw row whose version is in fact_events and where that fact is.';

grant select on spectrum.event_registry to spectrum_operator;

/*
 * event_index: where each event's current fact lives, and which raw row it came from. It is
 * what makes facts exactly-once: a new version of an event (a producer retry, a reprocess)
 * replaces the fact only when it was received later than (or is) the stored version, and
 * the ON CONFLICT on event_id serialises concurrent batches that carry the same event.
 * prev_* hold the location of the version just replaced, so its fact can be deleted even
 * when the new version moved to another account or month.
 */
create table if not exists spectrum.event_index (
  event_id uuid not null,
  raw_event_id uuid not null,
  received_at timestamptz not null,
  account_id uuid not null,
  occurred_at timestamptz not null,
  prev_account_id uuid,
  prev_occurred_at timestamptz,
  constraint event_index_pkey primary key (event_id)
);

comment on table spectrum.event_index is 'Internal: for each event_id, the raw row whose version is in fact_events and where that fact is.';

grant select on spectrum.event_index to spectrum_operator;

/*
 * raw_buckets: on Citus, the raw_events.bucket values, one per shard of raw_events (written when
 * the database is distributed, see docs/citus.md). Claims take one bucket at a time, so that each
 * is a single-shard query that may skip locked rows. Empty on a single server: claims go by the
 * primary key from the pending floor (022_pending_floor.sql).
 */
create table if not exists spectrum.raw_buckets (
  bucket integer not null,
  constraint raw_buckets_pkey primary key (bucket)
);

comment on table spectrum.raw_buckets is 'Citus only: one raw_events.bucket value per shard of raw_events, claimed one at a time; empty on a single server.';

grant select on spectrum.raw_buckets to spectrum_operator, spectrum_definer;

/*
 * status_totals triggers: keep the done counter of spectrum.status_totals right when raw rows
 * change outside the pipeline: a DBA's UPDATE or DELETE, spectrum.reprocess, the retention of
 * spectrum.maintenance, a TRUNCATE.
 *
 * The pipeline's own pending -> done update (20k rows a batch) is counted by process_pending
 * itself, so it must not pay here: the row trigger's WHEN is false for every transition out
 * of pending and is evaluated by the executor without calling any function. Only rows that
 * leave done, or enter done from failed or processing, reach the function.
 *
 * The row trigger does not update the counter row itself: updating one row thousands of times
 * in one transaction grows its version chain and gets slower with every row (quadratic). It
 * adds to a transaction-local setting instead (zeroed before each UPDATE statement, so a value
 * a session set by hand counts for nothing), and the statement trigger writes the sum once.
 * DELETE counts its done rows from the transition table, once per statement.
 *
 * Not counted: a row set from pending straight to done by hand (indistinguishable from the
 * pipeline's own update). spectrum.recount_status() repairs any drift.
 */
create or replace function spectrum.status_totals_track()
returns trigger
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_delta bigint;
begin
  if tg_level = 'ROW' then
    -- tg_op = 'UPDATE' (the WHEN clause chose the row): +1 entering done, -1 leaving it.
    v_delta := coalesce(nullif(pg_catalog.current_setting('spectrum.done_delta', true), '')::bigint, 0)
               + case when new.status = 'done' then 1 else -1 end;
    perform pg_catalog.set_config('spectrum.done_delta', v_delta::text, true);
    return null;
  end if;

  if tg_op = 'UPDATE' and tg_when = 'BEFORE' then
    -- Start from 0 whatever the session set, so the flush writes only this statement's rows.
    perform pg_catalog.set_config('spectrum.done_delta', '0', true);
  elsif tg_op = 'UPDATE' then
    v_delta := coalesce(nullif(pg_catalog.current_setting('spectrum.done_delta', true), '')::bigint, 0);
    if v_delta <> 0 then
      update spectrum.status_totals set events = events + v_delta where status = 'done';
      perform pg_catalog.set_config('spectrum.done_delta', '0', true);
    end if;
  elsif tg_op = 'DELETE' then
    select count(*) into v_delta from gone where gone.status = 'done';
    if v_delta > 0 then
      update spectrum.status_totals set events = events - v_delta where status = 'done';
    end if;
  elsif tg_op = 'TRUNCATE' then
    update spectrum.status_totals set events = 0 where status = 'done';
  end if;
  return null;
end
$$;

comment on function spectrum.status_totals_track() is
  'Internal trigger function: keeps spectrum.status_totals right when raw_events rows leave or enter done outside the pipeline, are deleted or truncated.';

create or replace trigger raw_events_done_changed
  after update on spectrum.raw_events
  for each row
  when ((old.status = 'done') <> (new.status = 'done') and old.status <> 'pending')
  execute function spectrum.status_totals_track();

create or replace trigger raw_events_done_reset
  before update on spectrum.raw_events
  for each statement
  execute function spectrum.status_totals_track();

create or replace trigger raw_events_done_flush
  after update on spectrum.raw_events
  for each statement
  execute function spectrum.status_totals_track();

create or replace trigger raw_events_done_deleted
  after delete on spectrum.raw_events
  referencing old table as gone
  for each statement
  execute function spectrum.status_totals_track();

create or replace trigger raw_events_done_truncated
  after truncate on spectrum.raw_events
  for each statement
  execute function spectrum.status_totals_track();

comment on trigger raw_events_done_changed on spectrum.raw_events is
  'Counts rows leaving done (or entering it from failed/processing) for spectrum.status_totals; never fires for the pipeline''s own pending -> done update.';
comment on trigger raw_events_done_reset on spectrum.raw_events is
  'Zeroes the statement''s done-count change before its rows are counted.';
comment on trigger raw_events_done_flush on spectrum.raw_events is
  'Writes the done-count change of the statement to spectrum.status_totals once.';
comment on trigger raw_events_done_deleted on spectrum.raw_events is
  'Subtracts the deleted done rows from spectrum.status_totals.';
comment on trigger raw_events_done_truncated on spectrum.raw_events is
  'Resets the done count of spectrum.status_totals to 0 on TRUNCATE.';

revoke all on function spectrum.status_totals_track() from public;

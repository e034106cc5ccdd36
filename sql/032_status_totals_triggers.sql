/*
 * status_totals triggers: keep spectrum.status_totals right for changes outside the pipeline (a
 * DBA, reprocess, retention, TRUNCATE). WHEN skips every change out of pending: the pipeline
 * counts its own, and recount_status repairs the same change made by hand. Rows add to
 * transaction-local settings that the statement trigger writes once: updating the counter row
 * per row is quadratic. A row going back to pending or processing also lowers
 * spectrum.pending_floor to its id (022_pending_floor.sql), so the claim finds it.
 */
create or replace function spectrum.status_totals_trigger()
returns trigger
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_done bigint;
  v_failed bigint;
  v_floor uuid;
  v_unfinished uuid;
begin
  if tg_level = 'ROW' then
    if old.status = 'done' or new.status = 'done' then
      v_done := coalesce(nullif(pg_catalog.current_setting('spectrum.done_delta', true), '')::bigint, 0)
                + case when new.status = 'done' then 1 else -1 end;
      perform pg_catalog.set_config('spectrum.done_delta', v_done::text, true);
    end if;
    if old.status = 'failed' or new.status = 'failed' then
      v_failed := coalesce(nullif(pg_catalog.current_setting('spectrum.failed_delta', true), '')::bigint, 0)
                  + case when new.status = 'failed' then 1 else -1 end;
      perform pg_catalog.set_config('spectrum.failed_delta', v_failed::text, true);
    end if;
    if new.status = 'done' then
      v_floor := nullif(pg_catalog.current_setting('spectrum.done_floor', true), '')::uuid;
      if v_floor is null or new.id < v_floor then
        perform pg_catalog.set_config('spectrum.done_floor', new.id::text, true);
      end if;
    elsif new.status in ('pending', 'processing') then
      -- Back to unfinished: the pending floor must not be above it (022_pending_floor.sql).
      v_unfinished := nullif(pg_catalog.current_setting('spectrum.unfinished_floor', true), '')::uuid;
      if v_unfinished is null or new.id < v_unfinished then
        perform pg_catalog.set_config('spectrum.unfinished_floor', new.id::text, true);
      end if;
    end if;
    return null;
  end if;

  if tg_op = 'UPDATE' and tg_when = 'BEFORE' then
    -- Whatever the session set counts for nothing: the flush writes this statement's rows only.
    perform pg_catalog.set_config('spectrum.done_delta', '0', true);
    perform pg_catalog.set_config('spectrum.failed_delta', '0', true);
    perform pg_catalog.set_config('spectrum.done_floor', '', true);
    perform pg_catalog.set_config('spectrum.unfinished_floor', '', true);
    return null;
  elsif tg_op = 'UPDATE' then
    v_done := coalesce(nullif(pg_catalog.current_setting('spectrum.done_delta', true), '')::bigint, 0);
    v_failed := coalesce(nullif(pg_catalog.current_setting('spectrum.failed_delta', true), '')::bigint, 0);
    v_floor := nullif(pg_catalog.current_setting('spectrum.done_floor', true), '')::uuid;
    v_unfinished := nullif(pg_catalog.current_setting('spectrum.unfinished_floor', true), '')::uuid;
    if v_unfinished is not null then
      perform pg_catalog.set_config('spectrum.unfinished_floor', '', true);
      update spectrum.pending_floor set floor = v_unfinished where floor > v_unfinished;
    end if;
    if v_done = 0 and v_failed = 0 and v_floor is null then
      return null;
    end if;
    perform pg_catalog.set_config('spectrum.done_delta', '0', true);
    perform pg_catalog.set_config('spectrum.failed_delta', '0', true);
    perform pg_catalog.set_config('spectrum.done_floor', '', true);
  elsif tg_op = 'DELETE' then
    select count(*) filter (where gone.status = 'done'), count(*) filter (where gone.status = 'failed')
      into v_done, v_failed
      from gone;
    if v_done = 0 and v_failed = 0 then
      return null;
    end if;
    v_done := -v_done;
    v_failed := -v_failed;
  elsif tg_op = 'TRUNCATE' then
    update spectrum.status_totals
       set events = 0, id_floor = '00000000-0000-0000-0000-000000000000'
     where status in ('done', 'failed');
    return null;
  end if;

  update spectrum.status_totals t
     set events = t.events + case t.status when 'done' then v_done else v_failed end,
         id_floor = case when t.status = 'done' then least(t.id_floor, v_floor) else t.id_floor end
    from (select s.status from spectrum.status_totals s
           where s.status in ('done', 'failed') order by s.status for update) l
   where t.status = l.status;
  return null;
end
$$;

comment on function spectrum.status_totals_trigger() is
  'Internal trigger function: keeps spectrum.status_totals right when raw_events rows leave or enter done or failed outside the pipeline, are deleted or truncated.';

-- The earlier names, from when only done was counted.
drop trigger if exists raw_events_done_changed on spectrum.raw_events;
drop trigger if exists raw_events_done_reset on spectrum.raw_events;
drop trigger if exists raw_events_done_flush on spectrum.raw_events;
drop trigger if exists raw_events_done_deleted on spectrum.raw_events;
drop trigger if exists raw_events_done_truncated on spectrum.raw_events;

create or replace trigger raw_events_status_changed
  after update on spectrum.raw_events
  for each row
  when (old.status <> new.status and old.status <> 'pending'
        and (old.status in ('done', 'failed') or new.status in ('done', 'failed')))
  execute function spectrum.status_totals_trigger();

create or replace trigger raw_events_status_reset
  before update on spectrum.raw_events
  for each statement
  execute function spectrum.status_totals_trigger();

create or replace trigger raw_events_status_flush
  after update on spectrum.raw_events
  for each statement
  execute function spectrum.status_totals_trigger();

create or replace trigger raw_events_status_deleted
  after delete on spectrum.raw_events
  referencing old table as gone
  for each statement
  execute function spectrum.status_totals_trigger();

create or replace trigger raw_events_status_truncated
  after truncate on spectrum.raw_events
  for each statement
  execute function spectrum.status_totals_trigger();

comment on trigger raw_events_status_changed on spectrum.raw_events is
  'Counts rows leaving or entering done or failed (other than from pending) for spectrum.status_totals; never fires for the pipeline''s own updates.';
comment on trigger raw_events_status_reset on spectrum.raw_events is
  'Zeroes the statement''s count changes before its rows are counted.';
comment on trigger raw_events_status_flush on spectrum.raw_events is
  'Writes the count changes of the statement to spectrum.status_totals once.';
comment on trigger raw_events_status_deleted on spectrum.raw_events is
  'Subtracts the deleted done and failed rows from spectrum.status_totals.';
comment on trigger raw_events_status_truncated on spectrum.raw_events is
  'Resets the counts of spectrum.status_totals to 0 on TRUNCATE.';

revoke all on function spectrum.status_totals_trigger() from public;

/*
 * cron_previous_run: the latest time at or before p_at that a pg_cron schedule names, for
 * spectrum.health's check that a job has not missed its runs. Understands what pg_cron 1.4
 * does (five fields of numbers, names, ranges, steps and lists, the @macros, pg_cron's
 * 'N seconds'); returns null for anything else (@reboot, '$'), which health then does not judge.
 */
create or replace function spectrum.cron_previous_run(
  p_schedule text,
  p_at timestamptz,
  p_timezone text default 'UTC'
)
returns timestamptz
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_fields text[];
  v_lo constant integer[] := array[0, 0, 1, 1, 0];
  v_hi constant integer[] := array[59, 23, 31, 12, 7];
  v_names constant text[] := array['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep',
                                   'oct', 'nov', 'dec', 'sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
  -- allowed[f][v + 1]: value v allowed in field f (minute, hour, day of month, month, weekday).
  v_allowed boolean[] := array_fill(false, array[5, 60]);
  v_item text;
  v_part text[];
  v_from integer;
  v_to integer;
  v_step integer;
  v_local timestamp;
  v_day date;
  v_dom_star boolean;
  v_dow_star boolean;
  v_day_ok boolean;
  v_h integer;
  v_m integer;
begin
  p_schedule := lower(btrim(p_schedule));
  if p_schedule ~ '^\d+ seconds?$' then
    return p_at - make_interval(secs => split_part(p_schedule, ' ', 1)::integer);
  end if;
  p_schedule := case p_schedule
    when '@yearly' then '0 0 1 1 *' when '@annually' then '0 0 1 1 *'
    when '@monthly' then '0 0 1 * *' when '@weekly' then '0 0 * * 0'
    when '@daily' then '0 0 * * *' when '@midnight' then '0 0 * * *'
    when '@hourly' then '0 * * * *' else p_schedule end;
  v_fields := regexp_split_to_array(p_schedule, '\s+');
  if cardinality(v_fields) <> 5 then
    return null;
  end if;
  for f in 1..5 loop
    -- Month and weekday names become numbers (jan = 1, sun = 0).
    if f >= 4 then
      for i in 1..19 loop
        v_fields[f] := replace(v_fields[f], v_names[i], (case when i <= 12 then i else i - 13 end)::text);
      end loop;
    end if;
    foreach v_item in array string_to_array(v_fields[f], ',') loop
      v_part := regexp_match(v_item, '^(\*|(\d+)(-(\d+))?)(/(\d+))?$');
      if v_part is null then
        return null;
      end if;
      v_step := coalesce(v_part[6]::integer, 1);
      v_from := coalesce(v_part[2]::integer, v_lo[f]);
      -- 'a/n' runs from a to the end of the range, as in vixie cron.
      v_to := coalesce(v_part[4]::integer, case when v_part[1] = '*' or v_part[5] is not null then v_hi[f] else v_from end);
      if v_step < 1 or v_from < v_lo[f] or v_to > v_hi[f] or v_from > v_to then
        return null;
      end if;
      for v in v_from..v_to by v_step loop
        v_allowed[f][(case when f = 5 then v % 7 else v end) + 1] := true;
      end loop;
    end loop;
  end loop;
  -- Day of month and weekday both restricted: either matches (vixie cron's rule).
  v_dom_star := left(v_fields[3], 1) = '*';
  v_dow_star := left(v_fields[5], 1) = '*';

  v_local := date_trunc('minute', p_at at time zone p_timezone);
  -- Eight years back finds even a 29 February schedule.
  for d in 0..2922 loop
    v_day := v_local::date - d;
    continue when not v_allowed[4][extract(month from v_day)::integer + 1];
    v_day_ok := case when v_dom_star or v_dow_star
                     then v_allowed[3][extract(day from v_day)::integer + 1] and v_allowed[5][extract(dow from v_day)::integer + 1]
                     else v_allowed[3][extract(day from v_day)::integer + 1] or v_allowed[5][extract(dow from v_day)::integer + 1] end;
    continue when not v_day_ok;
    v_h := case when d = 0 then extract(hour from v_local)::integer else 23 end;
    while v_h >= 0 loop
      if v_allowed[2][v_h + 1] then
        v_m := case when d = 0 and v_h = extract(hour from v_local)::integer then extract(minute from v_local)::integer else 59 end;
        while v_m >= 0 and not v_allowed[1][v_m + 1] loop
          v_m := v_m - 1;
        end loop;
        if v_m >= 0 then
          return (v_day + make_interval(hours => v_h, mins => v_m)) at time zone p_timezone;
        end if;
      end if;
      v_h := v_h - 1;
    end loop;
  end loop;
  return null;
end
$$;

comment on function spectrum.cron_previous_run(text, timestamptz, text) is
  'The latest time at or before p_at that the pg_cron schedule p_schedule names (in p_timezone, pg_cron''s UTC by default); null for a schedule it does not understand (@reboot, $).';

revoke all on function spectrum.cron_previous_run(text, timestamptz, text) from public;
grant execute on function spectrum.cron_previous_run(text, timestamptz, text) to spectrum_definer;

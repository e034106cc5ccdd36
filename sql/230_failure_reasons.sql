/*
 * failure_reasons: failed raw events grouped by field and problem, for an operator deciding what
 * to fix. error_msg splits only before a `name: `; a problem drops the value before its last
 * ' is ' and reads N for its first count; an unexpected error is never split.
 */
create or replace view spectrum.failure_reasons as
with errors as (
  select e.id, e.processed_at, x.error
    from spectrum.raw_events e
   cross join lateral pg_catalog.unnest(
     case when e.error_msg like 'unexpected error%' then array[e.error_msg]
          else pg_catalog.regexp_split_to_array(coalesce(e.error_msg, ''), '; (?=[A-Za-z_][A-Za-z0-9_.]*: )') end
   ) as x(error)
   where e.error_msg is not null and e.status = 'failed'
), parsed as (
  select id, processed_at, error,
         case when error like 'unexpected error%' then 'unexpected error'
              when pg_catalog.strpos(error, ': ') > 0 then pg_catalog.split_part(error, ': ', 1)
              else '' end as field,
         case when error like 'unexpected error%'
              then pg_catalog.regexp_replace(error, '^unexpected error after [0-9]+ attempts?: ', '')
              when pg_catalog.strpos(error, ': ') > 0
              then pg_catalog.substr(error, pg_catalog.strpos(error, ': ') + 2)
              else error end as rest
    from errors
)
select field,
       pg_catalog.regexp_replace(
         case when field <> 'unexpected error' and rest ~ '. is ' then pg_catalog.regexp_replace(rest, '^.* (is .*)$', '\1') else rest end,
         '^([^(]*?\s|)[0-9]+(\s)', '\1N\2') as problem,
       count(*) as events,
       (pg_catalog.array_agg(id order by processed_at desc, id desc))[1] as example_raw_id,
       (pg_catalog.array_agg(error order by processed_at desc, id desc))[1] as example_error,
       max(processed_at) as last_failed_at
  from parsed
 group by 1, 2
 order by events desc, field, problem;

comment on view spectrum.failure_reasons is
  'Failed raw events grouped by field and problem (the offending value taken out of error_msg), most frequent first, with the latest example (raw id and its error) and when the last one failed. A row with several errors counts in each group.';
comment on column spectrum.failure_reasons.field is 'The payload field named by the error (e.g. account_id, geo.country, payload), or "unexpected error".';
comment on column spectrum.failure_reasons.problem is 'The problem without the offending value, e.g. "is not a uuid", "missing", "text of N characters exceeds limits.maxTextLength (200)".';
comment on column spectrum.failure_reasons.events is 'How many failed raw rows have this error.';
comment on column spectrum.failure_reasons.example_raw_id is 'The raw_events id of the most recent such failure: select payload from spectrum.raw_events where id = …';
comment on column spectrum.failure_reasons.example_error is 'That failure''s error, with its value.';
comment on column spectrum.failure_reasons.last_failed_at is 'When the most recent such failure was processed.';

grant select on spectrum.failure_reasons to spectrum_operator;

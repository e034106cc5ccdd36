/*
 * The contenders the pipeline is measured against, written by hand in a schema `bench` of the
 * benchmark's own databases (never in a migration):
 *   - bench.reference_process: the plain-SQL reference, the fewest set-based statements doing
 *     the same work per batch (claim + validate + extract into a temp table, upsert the three
 *     dimensions, insert facts, mark statuses, commit). Same checks, same helpers. Facts are
 *     deduplicated by their own key; bench.reference_exactly_once adds the pipeline's
 *     event-level exactly-once (spectrum.event_registry), written by hand.
 *   - bench.naive_process: the seed's first way, a PL/pgSQL loop over pending rows with a
 *     savepoint (BEGIN … EXCEPTION) per event, casting and upserting one row at a time;
 *     bench.naive_process_widen_only, the same with guarded dimension upserts.
 * All of them claim in the pipeline's order (received_at, id), so all read the same index.
 *   - bench.raw_bare / bench.fact_bare: tables of the same columns and defaults as
 *     raw_events / fact_events with no index, constraint or partitioning: the COPY baseline
 *     and the INSERT … SELECT ceiling; bench.raw_bare_pk, raw_bare with the primary key only,
 *     shows what one index costs a COPY in the same run.
 */

export const BENCH_SCHEMA = String.raw`
create schema if not exists bench;

-- The bare tables are derived from the real ones, so they keep the same columns and
-- defaults as the spec and the schema evolve: LIKE copies no index and no check constraint.
create table bench.raw_bare (like spectrum.raw_events including defaults);
-- The same with the primary key only: what any keyed staging table pays at COPY, for scale.
create table bench.raw_bare_pk (like spectrum.raw_events including defaults);
alter table bench.raw_bare_pk add primary key (id);
create table bench.fact_bare (like spectrum.fact_events);

-- Cheap shape test (the pipeline's byte-wise one), then the plain cast; the exception-wrapped
-- cast only for odd values. p is the JSON value, t its text (p ->> key), taken once by the caller.
create function bench.as_uuid(p jsonb, t text) returns uuid language sql immutable as $$
  select case when jsonb_typeof(p) <> 'string' then null
              when octet_length(t) = 36 and t like '________-____-____-____-____________'
                   and octet_length(replace(t, '-', '')) = 32
                   and btrim(textsend(replace(t, '-', '')),
                        decode('30313233343536373839616263646566414243444546', 'hex')) = ''::bytea
              then t::uuid
              else spectrum.try_uuid(t) end
$$;

create function bench.as_timestamptz(p jsonb, t text) returns timestamptz language sql stable as $$
  select case when jsonb_typeof(p) <> 'string' then null
              when translate(t, '0123456789', '0000000000') in ('0000-00-00T00:00:00Z',
                   '0000-00-00T00:00:00.000Z')
                   and substr(t, 6, 2) between '01' and '12'
                   and substr(t, 9, 2) between '01' and '28'
                   and substr(t, 12, 2) < '24' then t::timestamptz
              else spectrum.try_timestamptz(t) end
$$;

create function bench.as_text(p jsonb) returns text language sql immutable as $$
  select case when jsonb_typeof(p) = 'string' then nullif(btrim(p #>> '{}'), '') end
$$;
`;

// Facts deduplicated by their own key: a retry with the same account and timestamp replaces the
// fact; one that changed either would leave two (the pipeline's event_registry prevents that).
const FACTS_BY_KEY = String.raw`
    insert into spectrum.fact_events as f (event_id, raw_event_id, event_type, occurred_at,
         received_at, account_id, user_id, geo_id, properties)
    select distinct on (event_id) event_id, raw_id, event_type, occurred_at, received_at,
         account_id, user_id, geo_id, properties
      from ref_batch where error_msg is null
     order by event_id, received_at desc, raw_id desc
    on conflict (account_id, event_id, occurred_at) do update
       set raw_event_id = excluded.raw_event_id, event_type = excluded.event_type,
            received_at = excluded.received_at,
           user_id = excluded.user_id, geo_id = excluded.geo_id, properties = excluded.properties
     where (excluded.received_at, excluded.raw_event_id) >= (f.received_at, f.raw_event_id);`;

// The pipeline's exactly-once, written by hand: the newest version of each event wins in
// spectrum.event_registry, a replaced version's fact is deleted, winners are marked in the batch.
const EVENT_INDEX = String.raw`
    with newest as (
      select distinct on (event_id) raw_id, event_id, received_at, account_id, occurred_at
        from ref_batch_x where error_msg is null
       order by event_id, received_at desc, raw_id desc
    ), won as (
      insert into spectrum.event_registry as x (event_id, raw_event_id, received_at, account_id,
           occurred_at)
      select event_id, raw_id, received_at, account_id, occurred_at from newest order by event_id
      on conflict (event_id) do update
         set raw_event_id = excluded.raw_event_id, received_at = excluded.received_at,
              account_id = excluded.account_id,
             occurred_at = excluded.occurred_at, prev_account_id = x.account_id,
                  prev_occurred_at = x.occurred_at
       where (excluded.received_at, excluded.raw_event_id) >= (x.received_at, x.raw_event_id)
      returning x.raw_event_id, x.prev_account_id, x.prev_occurred_at
    )
    update ref_batch_x b set won = true, prev_account_id = won.prev_account_id,
         prev_occurred_at = won.prev_occurred_at
      from won where b.raw_id = won.raw_event_id;
`;

const FACTS_EXACTLY_ONCE = String.raw`
    delete from spectrum.fact_events f using ref_batch_x b
     where b.won and b.prev_account_id is not null
       and f.account_id = b.prev_account_id and f.event_id = b.event_id
            and f.occurred_at = b.prev_occurred_at;

    insert into spectrum.fact_events (event_id, raw_event_id, event_type, occurred_at, received_at,
         account_id, user_id, geo_id, properties)
    select event_id, raw_id, event_type, occurred_at, received_at, account_id, user_id, geo_id,
         properties
      from ref_batch_x where won;`;

/**
 * Validates and extracts the rows that `claim` (a SELECT of id, received_at, payload) returns into
 * the temp table `batch`, with the pipeline's checks and error messages.
 */
export function extractInto(batch: string, claim: string): string {
  return String.raw`
    insert into ${batch}
    select raw_id, received_at,
           nullif(concat_ws('; ',
             case when jsonb_typeof(g) not in ('object', 'null') then 'geo: '
                  || spectrum.json_excerpt(g) || ' is not an object' end,
             case when je is not null and event_id is null then 'event_id: '
                  || spectrum.json_excerpt(je) || ' is not a uuid' end,
             case when jt is null then 'event_type: missing'
                  when jsonb_typeof(jt) <> 'string' then 'event_type: ' || spectrum.json_excerpt(jt)
                       || ' is not a string'
                  when event_type = '' then 'event_type: must not be empty'
                  when length(event_type) > 200 then 'event_type: longer than 200 characters' end,
             case when ja is null then 'account_id: missing'
                  when account_id is null then 'account_id: ' || spectrum.json_excerpt(ja)
                       || ' is not a uuid' end,
             case when ju is null then null
                  when jsonb_typeof(ju) not in ('string', 'number') then 'user_id: '
                       || spectrum.json_excerpt(ju) || ' is not a string or number'
                  when user_id = '' then 'user_id: must not be empty'
                  when length(user_id) > 200 then 'user_id: longer than 200 characters' end,
             case when jo is null then null
                  when occurred_at is null then 'timestamp: ' || spectrum.json_excerpt(jo)
                       || ' is not an ISO-8601 timestamp'
                  when occurred_at < received_at - interval '5 years'
                       or occurred_at > received_at + interval '1 day'
                  then 'timestamp: ' || spectrum.json_excerpt(jo)
                       || ' is outside the accepted window' end,
             case when jsonb_typeof(g -> 'country') not in ('string', 'null')
                  then 'geo.country: is not a string'
                  when length(country) > 200 then 'geo.country: longer than 200 characters' end,
             case when jsonb_typeof(g -> 'region') not in ('string', 'null')
                  then 'geo.region: is not a string'
                  when length(region) > 200 then 'geo.region: longer than 200 characters' end,
             case when jsonb_typeof(g -> 'city') not in ('string', 'null')
                  then 'geo.city: is not a string'
                  when length(city) > 200 then 'geo.city: longer than 200 characters' end,
             case when properties is null then 'properties: ' || spectrum.json_excerpt(jp)
                  || ' is not an object' end
           ), '') as error_msg,
           event_id, event_type, account_id, user_id, occurred_at,
           case when coalesce(country, region, city) is not null
                then md5(jsonb_build_array(country, region, city)::text)::uuid end as geo_id,
           country, region, city, properties
      from (
        select c.id as raw_id, c.received_at, g, je, jt, ja, ju, jo, jp,
               case when je is null then c.id else bench.as_uuid(je, te) end as event_id,
               jt #>> '{}' as event_type,
               bench.as_uuid(ja, ta) as account_id,
               case when jsonb_typeof(ju) in ('string', 'number') then ju #>> '{}' end as user_id,
               case when jo is null then c.received_at
                   else bench.as_timestamptz(jo, tt) end as occurred_at,
               bench.as_text(g -> 'country') as country, bench.as_text(g -> 'region') as region,
                    bench.as_text(g -> 'city') as city,
               case when jp is null then '{}'::jsonb when jsonb_typeof(jp) = 'object'
                    then jp end as properties
          from (${claim}) c,
               lateral (select nullif(c.payload -> 'geo', 'null') as g,
                              nullif(c.payload -> 'event_id', 'null') as je,
                              nullif(c.payload -> 'event_type', 'null') as jt,
                              nullif(c.payload -> 'account_id', 'null') as ja,
                              nullif(c.payload -> 'user_id', 'null') as ju,
                              nullif(c.payload -> 'timestamp', 'null') as jo,
                              nullif(c.payload -> 'properties', 'null') as jp,
                              c.payload ->> 'event_id' as te,
                              c.payload ->> 'account_id' as ta,
                              c.payload ->> 'timestamp' as tt offset 0) j
        -- offset 0 fences each level, so that a value is computed once per row, not once per use.
        offset 0
      ) x;
`;
}

const CLAIM = String.raw`select id, received_at, payload from spectrum.raw_events
                 where status = 'pending' order by received_at, id limit p_batch_size for update
                      skip locked`;

/**
 * The plain-SQL reference: per batch, one statement claims, validates and extracts into a temp
 * table, then one statement per dimension, the facts, and the one status update; commit.
 * exactlyOnce adds the pipeline's event-level guarantee (see EVENT_INDEX).
 */
function referenceProcedure(name: string, exactlyOnce: boolean): string {
  const x = exactlyOnce;
  const batch = x ? 'ref_batch_x' : 'ref_batch';
  const valid = x ? 'won' : 'error_msg is null';
  return String.raw`
create procedure bench.${name}(p_batch_size integer default 20000)
language plpgsql as $proc$
declare
  v_now timestamptz;
  v_rows bigint;
begin
  create temp table if not exists ${batch} (
    raw_id uuid, received_at timestamptz, error_msg text, event_id uuid, event_type text,
    account_id uuid, user_id text, occurred_at timestamptz, geo_id uuid, country text,
    region text, city text, properties jsonb
    ${x ? ', won boolean, prev_account_id uuid, prev_occurred_at timestamptz' : ''}
  ) on commit delete rows;
  loop
    v_now := clock_timestamp();
${extractInto(batch, CLAIM)}    get diagnostics v_rows = row_count;
    exit when v_rows = 0;
    -- Statistics for the null fractions the filters test, as the pipeline does.
    analyze ${batch} (error_msg, user_id, geo_id);
${x ? EVENT_INDEX : ''}
    insert into spectrum.dim_accounts as d (account_id, first_seen_at, last_seen_at)
    select account_id, min(occurred_at), max(occurred_at) from ${batch} where ${valid}
     group by account_id order by account_id
    on conflict (account_id) do update
       set first_seen_at = least(d.first_seen_at, excluded.first_seen_at),
            last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at)
     where excluded.first_seen_at < d.first_seen_at or excluded.last_seen_at > d.last_seen_at;

    insert into spectrum.dim_users as d (account_id, user_id, first_seen_at, last_seen_at)
    select account_id, user_id, min(occurred_at), max(occurred_at) from ${batch} where ${valid}
         and user_id is not null
     group by account_id, user_id order by account_id, user_id
    on conflict (account_id, user_id) do update
       set first_seen_at = least(d.first_seen_at, excluded.first_seen_at),
            last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at)
     where excluded.first_seen_at < d.first_seen_at or excluded.last_seen_at > d.last_seen_at;

    insert into spectrum.dim_geography (geo_id, country, region, city)
    select distinct on (geo_id) geo_id, country, region, city from ${batch} where ${valid}
         and geo_id is not null
     order by geo_id
    on conflict do nothing;

${x ? FACTS_EXACTLY_ONCE : FACTS_BY_KEY}
    update spectrum.raw_events e
       set status = case when b.error_msg is null then 'done' else 'failed' end,
           processed_at = v_now, error_msg = b.error_msg, attempts = e.attempts + 1
      from ${batch} b
     where e.id = b.raw_id;
    commit;
  end loop;
end
$proc$;`;
}

export const REFERENCE_SCHEMA =
  referenceProcedure('reference_process', false) +
  referenceProcedure('reference_exactly_once', true);

/**
 * The naive loop, one event at a time in a savepoint. widenOnly adds the guard a careful
 * hand would add to the dimension upserts (write only when first/last-seen widens); without
 * it each upsert rewrites the dimension row, as the seed's per-row upsert does.
 */
function naiveProcedure(name: string, widenOnly: boolean): string {
  const guard = widenOnly
    ? `
         where excluded.first_seen_at < d.first_seen_at or excluded.last_seen_at > d.last_seen_at;`
    : ';';
  return String.raw`
create procedure bench.${name}(p_batch_size integer default 20000)
language plpgsql as $proc$
declare
  r record;
  p jsonb;
  v_rows integer;
  v_event_id uuid;
  v_account_id uuid;
  v_user_id text;
  v_type text;
  v_at timestamptz;
  v_country text;
  v_region text;
  v_city text;
  v_geo_id uuid;
begin
  loop
    v_rows := 0;
    for r in select id, payload, received_at from spectrum.raw_events
              where status = 'pending' order by received_at, id limit p_batch_size for update
                   skip locked loop
      v_rows := v_rows + 1;
      p := r.payload;
      begin
        v_type := p ->> 'event_type';
        if v_type is null or v_type = '' or jsonb_typeof(p -> 'event_type') <> 'string' then
          raise exception 'event_type: missing or not a non-empty string';
        end if;
        v_account_id := (p ->> 'account_id')::uuid;
        if v_account_id is null then raise exception 'account_id: missing'; end if;
        v_event_id := coalesce((p ->> 'event_id')::uuid, r.id);
        if jsonb_typeof(p -> 'user_id') not in ('string', 'number')
             then raise exception 'user_id: not a string or number'; end if;
        v_user_id := nullif(p ->> 'user_id', '');
        if p ->> 'timestamp' !~ '^\d{4}-\d\d-\d\d'
             then raise exception 'timestamp: not ISO-8601'; end if;
        v_at := coalesce((p ->> 'timestamp')::timestamptz, r.received_at);
        if v_at < r.received_at - interval '5 years' or v_at > r.received_at + interval '1 day' then
          raise exception 'timestamp: outside the accepted window';
        end if;
        if jsonb_typeof(p -> 'geo') not in ('object', 'null')
             then raise exception 'geo: not an object'; end if;
        if jsonb_typeof(p -> 'properties') not in ('object', 'null')
             then raise exception 'properties: not an object'; end if;
        v_country := nullif(btrim(p -> 'geo' ->> 'country'), '');
        v_region := nullif(btrim(p -> 'geo' ->> 'region'), '');
        v_city := nullif(btrim(p -> 'geo' ->> 'city'), '');
        v_geo_id := case when coalesce(v_country, v_region, v_city) is not null
                         then md5(jsonb_build_array(v_country, v_region, v_city)::text)::uuid end;

        insert into spectrum.dim_accounts as d (account_id, first_seen_at,
             last_seen_at) values (v_account_id, v_at, v_at)
        on conflict (account_id) do update
           set first_seen_at = least(d.first_seen_at, excluded.first_seen_at),
                last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at)${guard}
        if v_user_id is not null then
          insert into spectrum.dim_users as d (account_id, user_id, first_seen_at,
               last_seen_at) values (v_account_id, v_user_id, v_at, v_at)
          on conflict (account_id, user_id) do update
             set first_seen_at = least(d.first_seen_at, excluded.first_seen_at),
                  last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at)${guard}
        end if;
        if v_geo_id is not null then
          insert into spectrum.dim_geography (geo_id, country, region, city) values (v_geo_id,
               v_country, v_region, v_city)
          on conflict do nothing;
        end if;
        insert into spectrum.fact_events as f (event_id, raw_event_id, event_type, occurred_at,
             received_at, account_id, user_id, geo_id, properties)
        values (v_event_id, r.id, v_type, v_at, r.received_at, v_account_id, v_user_id, v_geo_id,
             coalesce(p -> 'properties', '{}'))
        on conflict (account_id, event_id, occurred_at) do update
           set raw_event_id = excluded.raw_event_id, event_type = excluded.event_type,
                received_at = excluded.received_at,
               user_id = excluded.user_id, geo_id = excluded.geo_id,
                    properties = excluded.properties
         where (excluded.received_at, excluded.raw_event_id) >= (f.received_at, f.raw_event_id);
        update spectrum.raw_events set status = 'done', processed_at = clock_timestamp(),
             error_msg = null, attempts = attempts + 1
         where id = r.id;
      exception when others then
        update spectrum.raw_events set status = 'failed', processed_at = clock_timestamp(),
             error_msg = sqlerrm, attempts = attempts + 1
         where id = r.id;
      end;
    end loop;
    commit;
    exit when v_rows = 0;
  end loop;
end
$proc$;
`;
}

export const NAIVE_SCHEMA =
  naiveProcedure('naive_process', false) + naiveProcedure('naive_process_widen_only', true);

/**
 * The ceiling: extracted rows straight into a bare fact-shaped table (all-valid data; no
 * dimensions, no statuses).
 */
export const CEILING = String.raw`
insert into bench.fact_bare (event_id, raw_event_id, event_type, occurred_at, received_at,
     account_id, user_id, geo_id, properties)
select coalesce((payload ->> 'event_id')::uuid, id), id, payload ->> 'event_type',
       coalesce((payload ->> 'timestamp')::timestamptz, received_at), received_at,
            (payload ->> 'account_id')::uuid,
       payload ->> 'user_id',
       case when payload ? 'geo' then md5(jsonb_build_array(payload -> 'geo' ->> 'country',
            payload -> 'geo' ->> 'region', payload -> 'geo' ->> 'city')::text)::uuid end,
       coalesce(payload -> 'properties', '{}')
  from spectrum.raw_events`;

/*
 * The strongest reference: a hand-written set-based pipeline with the pipeline's outcome (one fact
 * per event_id, the newest version wins, the same failures with the same messages) but free in
 * its own schema, in a schema `bench_s` of the benchmark's databases:
 *   - its own staging table with no index but the primary key and room on each page
 *     (fillfactor 60), so that marking a row done is a HOT update; it claims by id from a cursor
 *     it keeps in a variable, which is right only because nothing inserts during its run;
 *   - dimensions with surrogate integer keys, facts keyed by event_id alone (no partitions, no
 *     event-level bookkeeping: ON CONFLICT on the fact keeps the newest version), foreign keys
 *     on the surrogate keys;
 *   - the pipeline's validation and messages (extractInto, shared with the plain-SQL reference).
 * Its input is a copy of spectrum.raw_events, made when the template is loaded.
 */
import type { Sql } from '../lib/db.ts';
import { countOutcome } from './measure.ts';
import { extractInto } from './references.ts';

export const STRONGEST_SCHEMA = String.raw`
create schema if not exists bench_s;

create table bench_s.raw (
  id uuid primary key, payload jsonb not null, received_at timestamptz not null,
  status text not null default 'pending', processed_at timestamptz, error_msg text,
  attempts integer not null default 0
) with (fillfactor = 60);

create table bench_s.accounts (
  account_key integer generated always as identity primary key,
  account_id uuid not null unique,
  first_seen_at timestamptz not null, last_seen_at timestamptz not null
);

create table bench_s.users (
  user_key integer generated always as identity primary key,
  account_key integer not null references bench_s.accounts,
  user_id text not null,
  first_seen_at timestamptz not null, last_seen_at timestamptz not null,
  unique (account_key, user_id)
);

create table bench_s.places (
  place_key integer generated always as identity primary key,
  geo_hash uuid not null unique,
  country text, region text, city text
);

create table bench_s.facts (
  event_id uuid primary key,
  raw_id uuid not null, event_type text not null,
  occurred_at timestamptz not null, received_at timestamptz not null,
  account_key integer not null references bench_s.accounts,
  user_key integer references bench_s.users,
  place_key integer references bench_s.places,
  properties jsonb not null
);

create procedure bench_s.process(p_batch_size integer default 20000)
language plpgsql as $proc$
declare
  v_now timestamptz;
  v_rows bigint;
  v_cursor uuid := '00000000-0000-0000-0000-000000000000';
begin
  create temp table if not exists strong_batch (
    raw_id uuid, received_at timestamptz, error_msg text, event_id uuid, event_type text,
    account_id uuid, user_id text, occurred_at timestamptz, geo_id uuid, country text,
    region text, city text, properties jsonb
  ) on commit delete rows;
  loop
    v_now := clock_timestamp();
${extractInto(
  'strong_batch',
  `select id, received_at, payload from bench_s.raw
                 where id > v_cursor and status = 'pending' order by id limit p_batch_size
                   for update skip locked`,
)}
    get diagnostics v_rows = row_count;
    exit when v_rows = 0;
    select raw_id into v_cursor from strong_batch order by raw_id desc limit 1;
    analyze strong_batch (error_msg, user_id, geo_id);

    insert into bench_s.accounts as d (account_id, first_seen_at, last_seen_at)
    select account_id, min(occurred_at), max(occurred_at) from strong_batch
     where error_msg is null
     group by account_id order by account_id
    on conflict (account_id) do update
       set first_seen_at = least(d.first_seen_at, excluded.first_seen_at),
           last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at)
     where excluded.first_seen_at < d.first_seen_at or excluded.last_seen_at > d.last_seen_at;

    insert into bench_s.users as d (account_key, user_id, first_seen_at, last_seen_at)
    select a.account_key, b.user_id, min(b.occurred_at), max(b.occurred_at)
      from strong_batch b join bench_s.accounts a using (account_id)
     where b.error_msg is null and b.user_id is not null
     group by a.account_key, b.user_id order by a.account_key, b.user_id
    on conflict (account_key, user_id) do update
       set first_seen_at = least(d.first_seen_at, excluded.first_seen_at),
           last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at)
     where excluded.first_seen_at < d.first_seen_at or excluded.last_seen_at > d.last_seen_at;

    insert into bench_s.places (geo_hash, country, region, city)
    select distinct on (geo_id) geo_id, country, region, city from strong_batch
     where error_msg is null and geo_id is not null
     order by geo_id
    on conflict do nothing;

    insert into bench_s.facts as f (event_id, raw_id, event_type, occurred_at, received_at,
         account_key, user_key, place_key, properties)
    select distinct on (b.event_id) b.event_id, b.raw_id, b.event_type, b.occurred_at,
           b.received_at, a.account_key, u.user_key, p.place_key, b.properties
      from strong_batch b
      join bench_s.accounts a on a.account_id = b.account_id
      left join bench_s.users u on u.account_key = a.account_key and u.user_id = b.user_id
      left join bench_s.places p on p.geo_hash = b.geo_id
     where b.error_msg is null
     order by b.event_id, b.received_at desc, b.raw_id desc
    on conflict (event_id) do update
       set raw_id = excluded.raw_id, event_type = excluded.event_type,
           occurred_at = excluded.occurred_at, received_at = excluded.received_at,
           account_key = excluded.account_key, user_key = excluded.user_key,
           place_key = excluded.place_key, properties = excluded.properties
     where (excluded.received_at, excluded.raw_id) >= (f.received_at, f.raw_id);

    update bench_s.raw e
       set status = case when b.error_msg is null then 'done' else 'failed' end,
           processed_at = v_now, error_msg = b.error_msg, attempts = e.attempts + 1
      from strong_batch b
     where e.id = b.raw_id;
    commit;
  end loop;
end
$proc$;
`;

/** Its input: the template's raw events, copied once when the template is loaded. */
export const STRONGEST_LOAD = String.raw`
insert into bench_s.raw (id, payload, received_at)
select id, payload, received_at from spectrum.raw_events order by id;`;

export const strongestOutcome = (sql: Sql) =>
  countOutcome(sql, {
    raw: 'bench_s.raw',
    facts: ['bench_s.facts'],
    accounts: 'bench_s.accounts',
    users: 'bench_s.users',
    places: 'bench_s.places',
  });

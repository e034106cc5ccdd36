/*
 * process_claimed: the set-based body of one batch. spectrum.process_pending claims the ids
 * (FOR UPDATE SKIP LOCKED) and calls this inside the batch's transaction.
 *
 * Written for speed (npm run bench): every statement reads the batch table once and writes it
 * only for the rare superseded rows (rewriting all of it to mark the winners cost a tenth of
 * the batch); the raw rows are reached through p_ids (an index probe each, whatever the size
 * of raw_events); the counts come from row counts already at hand, not another scan.
 */
import { createHash } from 'node:crypto';
import type { FieldModel, Model } from '../spec/model.ts';
import { CAREFUL, extractAttempts, extractLegend, extractSelect, geoIdOf } from './extract.ts';
import { commentOn, GENERATED, ident, indent, wrap } from './sql.ts';

/** `head` and a column list, continued on lines indented by `by` when it is long. */
const list = (head: string, items: string[], by: number) =>
  wrap([`${head}${items[0]}`, ...items.slice(1)], 90 - by).join(`,\n${' '.repeat(by)}`);

function dimUpsert(
  batch: string,
  table: string,
  keys: string[],
  attrs: FieldModel[],
  where: string,
): string {
  const k = keys.join(', ');
  const a = attrs.map((f) => ident(f.name));
  const s = attrs.map((f) => ident(`${f.name}_seen_at`));
  // Each attribute keeps the value of the newest event that names it, whatever the order of
  // batches.
  const aggs = a.map(
    (c) => `(array_agg(${c} order by occurred_at desc) filter (where ${c} is not null))[1]`,
  );
  const seen = a.map((c) => `max(occurred_at) filter (where ${c} is not null)`);
  const sets = a.flatMap((c, i) => [
    `${c} = case when excluded.${s[i]} >= coalesce(d.${s[i]}, '-infinity')\n` +
      `         then excluded.${c} else d.${c} end`,
    `${s[i]} = greatest(d.${s[i]}, excluded.${s[i]})`,
  ]);
  const changed = a.map(
    (c, i) =>
      `(excluded.${s[i]} is not null\n` +
      `        and (d.${s[i]} is null or excluded.${s[i]} > d.${s[i]}\n` +
      `             or (excluded.${s[i]} = d.${s[i]} and excluded.${c} is distinct from d.${c})))`,
  );
  const setFirstLast = [
    'first_seen_at = least(d.first_seen_at, excluded.first_seen_at)',
    'last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at)',
  ];
  const widened = [
    'excluded.first_seen_at < d.first_seen_at',
    'excluded.last_seen_at > d.last_seen_at',
  ];
  const cols = [k, 'first_seen_at', 'last_seen_at', ...a, ...s];
  return `${list(`insert into ${table} as d (`, cols, 4)})
${list('select ', [k, 'min(occurred_at)', 'max(occurred_at)', ...aggs, ...seen], 7)}
  from pg_temp.${batch}
 where error_msg is null and superseded is null${where}
 group by ${k}
 order by ${k}
on conflict (${k}) do update
   set ${[...setFirstLast, ...sets].join(',\n       ')}
 where ${[...widened, ...changed].join('\n    or ')};`;
}

/**
 * The batch's distinct places among its valid, current events, each with its geo_id: computed
 * once per place rather than once per row (md5 is the dearest step of the extraction). A place
 * is keyed by its values as text, '' for null, so that rows hash-join to it: no valid value
 * prints as '' (a text field refuses '' or trims it to null). A non-text value is grouped on as
 * well, since equal values may print differently (1.0 and 1.00) and so differ in geo_id. Its
 * columns are named by spec position (fN_key, fN_value), never by field name.
 */
const placeKey = (f: FieldModel, of = '') =>
  `coalesce(${of}${ident(f.name)}${f.type === 'text' ? '' : '::text'}, '')`;

/** A place's value of field f, from its key (a text) or the value it is grouped on (any other). */
const placeValue = (f: FieldModel) =>
  f.type === 'text' ? `nullif(f${f.position}_key, '')` : `f${f.position}_value`;

function places(batch: string, fields: FieldModel[]): string {
  const key = (f: FieldModel) => `f${f.position}_key`;
  const val = (f: FieldModel) => `f${f.position}_value`;
  const typed = fields.filter((f) => f.type !== 'text');
  const keys = fields.map((f) => `${placeKey(f)} as ${key(f)}`);
  const values = fields.map(placeValue);
  const groups = [...keys, ...typed.map((f) => `${ident(f.name)} as ${val(f)}`)];
  return `select ${[...fields.map(key), ...typed.map(val)].join(', ')},
       ${geoIdOf(values, 7)} as geo_id
  from (select ${wrap(groups, 76).join(',\n               ')}
          from pg_temp.${batch}
         where error_msg is null and superseded is null
           and coalesce(${fields.map((f) => ident(f.name)).join(', ')}) is not null
         group by ${groups.map((_, i) => i + 1).join(', ')}) place`;
}

/** The claimed rows, as extractSelect reads them. */
const SOURCE = `select id as raw_id, received_at, payload
  from spectrum.raw_events
 where id = any(p_ids)`;

/** The fact columns after event_id and raw_event_id, named alike in the batch table. */
const FACT_COLS = [
  'event_type',
  'occurred_at',
  'received_at',
  'account_id',
  'user_id',
  'geo_id',
  'properties',
];

/** Columns of the batch table besides the extracted ones: what the batch records about each row. */
const BOOKKEEPING = [
  ['superseded', 'boolean'],
  ['prev_account_id', 'uuid'],
  ['prev_occurred_at', 'timestamptz'],
];

/**
 * The registry step: the newest version of each event wins, the others are superseded. An event
 * is its event_id on one server; on Citus the registry is keyed (account_id, event_id), on the
 * node of the account's facts, and an event's account cannot change (docs/citus.md).
 */
function registryStep(batch: string, byAccount: boolean): string {
  // The key's columns; ON CONFLICT names the key itself, valid in both shapes.
  const key = byAccount ? 'account_id, event_id' : 'event_id';
  const setAccount = byAccount ? '' : '\n         account_id = excluded.account_id,';
  return `with candidate as (
  select distinct on (${key}) raw_id, event_id, received_at, account_id, occurred_at
    from (select raw_id, event_id, received_at, account_id, occurred_at
            from pg_temp.${batch}
           where error_msg is null
          union all
          select b.raw_id, x.event_id, x.received_at, x.account_id, x.occurred_at
            from pg_temp.${batch} b
            join spectrum.event_registry x
              on x.event_id = coalesce(b.event_id, b.raw_id) and x.raw_event_id = b.raw_id
           where b.error_msg is not null) versions
   order by ${key}, received_at desc, raw_id desc
), won as (
  insert into spectrum.event_registry as x
         (event_id, raw_event_id, received_at, account_id, occurred_at)
  select event_id, raw_id, received_at, account_id, occurred_at
    from candidate
   order by ${key}
  on conflict on constraint event_registry_pkey do update
     set raw_event_id = excluded.raw_event_id,
         received_at = excluded.received_at,${setAccount}
         occurred_at = excluded.occurred_at,
         prev_account_id = x.account_id,
         prev_occurred_at = x.occurred_at
   where (excluded.received_at, excluded.raw_event_id) >= (x.received_at, x.raw_event_id)
  returning x.raw_event_id, x.prev_account_id, x.prev_occurred_at
), replacing as (
  update pg_temp.${batch} b
     set prev_account_id = won.prev_account_id, prev_occurred_at = won.prev_occurred_at
    from won
   where b.raw_id = won.raw_event_id and won.prev_account_id is not null
)
update pg_temp.${batch} b
   set superseded = true
 where b.error_msg is null
   and not exists (select from won where won.raw_event_id = b.raw_id);
get diagnostics v_result.superseded = row_count;`;
}

export function emitProcessClaimed(m: Model): string {
  // What extract_event returns but geo_id: the pipeline computes that per place (places()).
  const typeCols = [
    ['raw_id', 'uuid'],
    ['received_at', 'timestamptz'],
    ['error_msg', 'text'],
    ...m.fields.map((f) => [f.name, f.sqlType]),
  ];
  const tableCols = [...typeCols, ...BOOKKEEPING].map(([n, t]) => `${ident(n!)} ${t}`);
  const shape = createHash('sha256').update(tableCols.join(',')).digest('hex');
  const batch = `spectrum_batch_${shape.slice(0, 8)}`;
  const colNames = typeCols.map(([n]) => ident(n!));
  const geoFields = m.dims.geography;
  const geo = geoFields.map((f) => ident(f.name));
  // A fact's geo_id is its place's (null without a place); other columns are the batch row's.
  const placeJoin = geoFields.map((f) => `p.f${f.position}_key = ${placeKey(f, 'b.')}`);
  const placeOf = geo.length
    ? `\n  left join (\n${indent(places(batch, geoFields), 4)}\n  ) p\n` +
      `    on ${placeJoin.join('\n   and ')}`
    : '';
  const placeGeoId = geo.length ? 'p.geo_id' : 'null::uuid';
  const factValue = (c: string) => (c === 'geo_id' ? placeGeoId : `b.${c}`);
  const extras = m.factExtras.map((f) => ident(f.name));
  const userWhere = ' and user_id is not null';
  const factCols = ['event_id', 'raw_event_id', ...FACT_COLS, ...extras];
  const body = `-- The batch table is per session; its name carries its columns so that a session
-- that outlives a migration never reuses a table of another shape.
if pg_catalog.to_regclass('pg_temp.${batch}') is null then
  create temp table ${batch} (
${indent(tableCols.join(',\n'), 4)}
  ) on commit delete rows;
end if;
truncate pg_temp.${batch};

-- The extraction's geo_id is not kept (the planner drops it unread): facts take their place's.
${extractAttempts(
  `${list(`insert into pg_temp.${batch} (`, colNames, 4)})\n` +
    `${list('select ', colNames, 7)}\n` +
    `  from (\n${indent(extractSelect(m, SOURCE), 4)}\n  ) extracted`,
  'get diagnostics v_rows = row_count;',
)}
-- Statistics only for the columns that filters test: the plans need their null fractions.
analyze pg_temp.${batch} (error_msg, superseded, user_id, prev_account_id);

-- Every month a valid event needs must have its partition; else nothing is written and the
-- caller creates them in a transaction of their own, then retries the batch.
select array_agg(distinct date_trunc('month', occurred_at)), count(*)
  into v_months, v_result.done
  from pg_temp.${batch}
 where error_msg is null;
v_missing := spectrum.missing_fact_partitions(v_months);
if v_missing is not null then
  v_result.missing_months := v_missing;
  return v_result;
end if;

-- The newest valid version of each event in the batch is a candidate; older ones in the
-- batch are superseded. A candidate wins unless event_registry holds a newer version. Only the
-- rare rows are rewritten: valid rows that did not win (superseded) and winners that replace
-- a stored version (where that version's fact is).
--
-- A stored version that is now invalid (its raw row reprocessed after the payload or the spec
-- changed) is a candidate too, with its stored location: it "replaces" itself, so its fact
-- is deleted below and none is inserted. An invalid event has no fact. Both kinds go through
-- the one upsert, which locks event_registry rows in event_id order.
-- The registry's key says which form runs (plpgsql plans only the branch it takes).
if v_registry_by_account then
${indent(registryStep(batch, true))}
else
${indent(registryStep(batch, false))}
end if;

${dimUpsert(batch, 'spectrum.dim_accounts', ['account_id'], m.dims.accounts, '')}

${dimUpsert(batch, 'spectrum.dim_users', ['account_id', 'user_id'], m.dims.users, userWhere)}

${
  geo.length
    ? `${list('insert into spectrum.dim_geography (', ['geo_id', ...geo], 4)})
${list('select ', ['geo_id', ...geoFields.map(placeValue)], 7)}
  from (
${indent(places(batch, geoFields), 4)}
  ) p
 order by geo_id
on conflict do nothing;`
    : '-- No geography fields: no places.'
}

-- Fresh statistics for a dimension that grew, before the fact insert plans its key checks.
perform spectrum.analyze_grown_tables(
  array['spectrum.dim_accounts', 'spectrum.dim_users', 'spectrum.dim_geography']::regclass[]);

-- A replaced version's fact is removed first: its account or month may have changed. In a
-- statement of its own, so that its snapshot sees a version committed while the upsert above
-- waited for it.
delete from spectrum.fact_events f
 using pg_temp.${batch} b
 where b.prev_account_id is not null
   and f.account_id = b.prev_account_id and f.event_id = b.event_id
   and f.occurred_at = b.prev_occurred_at;

-- In primary-key order: the key inserts and the foreign-key lookups then walk their indexes in
-- order (a tenth faster than in batch order).
${list('insert into spectrum.fact_events (', factCols, 4)})
${list('select ', ['event_id', 'raw_id', ...FACT_COLS, ...extras].map(factValue), 7)}
  from pg_temp.${batch} b${placeOf}
 where b.error_msg is null and b.superseded is null
 order by b.account_id, b.event_id;

-- The one status update. e.id = any(p_ids) lets the planner probe the primary key for the
-- batch's rows rather than walk raw_events (millions of done rows) to join them.
update spectrum.raw_events e
   set status = case when b.error_msg is null then 'done' else 'failed' end,
       processed_at = p_now,
       error_msg = b.error_msg,
       attempts = e.attempts + 1
  from pg_temp.${batch} b
 where e.id = b.raw_id and e.id = any(p_ids);

v_result.failed := v_rows - v_result.done;
return v_result;`;
  return `${GENERATED(
    import.meta.url,
    'process_claimed: interprets one claimed batch, set-based, and records every outcome.\n' +
      'Caller: spectrum.process_pending (which holds the row locks). Never raises for a bad\n' +
      'payload: bad events end failed with error_msg. Returns the counts, or the missing months.',
  )}${extractLegend(m, 'the extraction SELECT that fills the batch table')}
create or replace function spectrum.process_claimed(
  p_ids uuid[],
  p_now timestamptz default clock_timestamp()
)
returns spectrum.batch_result
language plpgsql
volatile
set timezone = 'UTC'
set search_path = pg_catalog, pg_temp
-- Batches of 50k rows and more pass jit_above_cost; compiling then costs more than it saves.
set jit = off
as $fn$
declare
  v_result spectrum.batch_result := row(0, 0, 0, 0, null)::spectrum.batch_result;
  v_months timestamptz[];
  v_missing timestamptz[];
  v_rows integer;
  v_registry_by_account boolean;
  ${CAREFUL} boolean := false;
begin
  -- Keyed (account_id, event_id) once distributed on Citus (docs/citus.md), else by event_id.
  select i.indnatts = 2
    into v_registry_by_account
    from pg_catalog.pg_index i
   where i.indrelid = 'spectrum.event_registry'::pg_catalog.regclass and i.indisprimary;
${indent(body)}
end
$fn$;

revoke all on function spectrum.process_claimed(uuid[], timestamptz) from public;

${commentOn(
  'function spectrum.process_claimed(uuid[], timestamptz)',
  'Internal: interprets the claimed raw_events rows p_ids in one set-based pass (dimensions, ' +
    'facts, statuses). Called by spectrum.process_pending.',
)}
`;
}

/*
 * Emitters for the spec-shaped tables and the extracted-row type. Each is rerunnable and
 * additive: `create … if not exists` with every column, then `add column if not exists` for
 * every non-key column, so the same text creates a fresh table or widens a deployed one
 * without rewriting it (nullable columns without defaults are catalog-only changes).
 */
import type { FieldModel, Model } from '../spec/model.ts';
import { GENERATED, ident, literal } from './sql.ts';

const col = (f: FieldModel) => `${ident(f.name)} ${f.sqlType}`;

function addColumns(table: string, cols: FieldModel[], seen = false): string {
  return cols
    .map(
      (f) =>
        `alter table ${table} add column if not exists ${col(f)};\n` +
        (seen
          ? `alter table ${table} add column if not exists ${ident(f.name + '_seen_at')} timestamptz;\n`
          : ''),
    )
    .join('');
}
const seenCols = (attrs: FieldModel[]) =>
  attrs.map((f) => `  ${col(f)},\n  ${ident(f.name + '_seen_at')} timestamptz,\n`).join('');

function comments(table: string, cols: FieldModel[], seen = false): string {
  return cols
    .map(
      (f) =>
        `comment on column ${table}.${ident(f.name)} is ${literal(`From payload ${f.label} (${f.type})${seen ? ': the value of the newest event that names it' : ''}.`)};\n` +
        (seen
          ? `comment on column ${table}.${ident(f.name + '_seen_at')} is ${literal(`occurred_at of the event ${f.name} was taken from.`)};\n`
          : ''),
    )
    .join('');
}

export function emitDimAccounts(m: Model): string {
  const t = 'spectrum.dim_accounts';
  const attrs = m.dims.accounts;
  return `${GENERATED('dim_accounts: one row per account seen in a processed event.\nUpserted by spectrum.process_claimed; first/last_seen_at only ever widen.')}
create table if not exists ${t} (
  account_id uuid not null,
  first_seen_at timestamptz not null,
  last_seen_at timestamptz not null,
${seenCols(attrs)}  constraint dim_accounts_pkey primary key (account_id)
);
${addColumns(t, attrs, true)}
comment on table ${t} is 'One row per account_id seen in a processed event, with the occurred_at range it was seen in.';

grant select on ${t} to spectrum_reader;
${comments(t, attrs, true)}`;
}

export function emitDimUsers(m: Model): string {
  const t = 'spectrum.dim_users';
  const attrs = m.dims.users;
  return `${GENERATED('dim_users: one row per (account_id, user_id) seen in a processed event.\nAnonymous events (no user_id) have no row here.')}
create table if not exists ${t} (
  account_id uuid not null,
  user_id text not null,
  first_seen_at timestamptz not null,
  last_seen_at timestamptz not null,
${seenCols(attrs)}  constraint dim_users_pkey primary key (account_id, user_id),
  constraint dim_users_account_fkey foreign key (account_id) references spectrum.dim_accounts (account_id)
);
${addColumns(t, attrs, true)}
comment on table ${t} is 'One row per (account_id, user_id) seen in a processed event, with the occurred_at range it was seen in.';

grant select on ${t} to spectrum_reader;
${comments(t, attrs, true)}`;
}

export function emitDimGeography(m: Model): string {
  const t = 'spectrum.dim_geography';
  const attrs = m.dims.geography;
  const triple = attrs.map((f) => ident(f.name)).join(', ');
  return `${GENERATED('dim_geography: one row per distinct place (NULLs equal).\ngeo_id is deterministic: md5 of the normalised attributes as a JSON array, so every\nsession (and every shard, later) derives the same key without a sequence.')}
create table if not exists ${t} (
  geo_id uuid not null,
${attrs.map((f) => `  ${col(f)},\n`).join('')}  constraint dim_geography_pkey primary key (geo_id)${triple ? `,\n  constraint dim_geography_place_key unique nulls not distinct (${triple})` : ''}
);
${addColumns(t, attrs)}
comment on table ${t} is 'One row per distinct place; geo_id = md5 of the normalised attributes, so it is stable across sessions.';

grant select on ${t} to spectrum_reader;
${comments(t, attrs)}`;
}

export function emitFactEvents(m: Model): string {
  const t = 'spectrum.fact_events';
  const extras = m.factExtras;
  return `${GENERATED('fact_events: one row per distinct event (event_id), partitioned by month of occurred_at.\nPartitions are created by spectrum.ensure_fact_partitions (never a default partition).')}
create table if not exists ${t} (
  event_id uuid not null,
  raw_event_id uuid not null,
  event_type text not null,
  occurred_at timestamptz not null,
  received_at timestamptz not null,
  account_id uuid not null,
  user_id text,
  geo_id uuid,
  properties jsonb not null,
${extras.map((f) => `  ${col(f)},\n`).join('')}  constraint fact_events_pkey primary key (account_id, event_id, occurred_at),
  constraint fact_events_account_fkey foreign key (account_id) references spectrum.dim_accounts (account_id),
  constraint fact_events_user_fkey foreign key (account_id, user_id) references spectrum.dim_users (account_id, user_id),
  constraint fact_events_geo_fkey foreign key (geo_id) references spectrum.dim_geography (geo_id)
) partition by range (occurred_at);
${addColumns(t, extras)}
comment on table ${t} is 'One row per distinct event (event_id), reflecting its most recently received version; partitioned by month of occurred_at.';

grant select on ${t} to spectrum_reader;
${comments(t, extras)}`;
}

/** What pg_catalog.format_type says for each sqlType, to compare the deployed type with the spec. */
const CATALOG_TYPE: Record<string, string> = { timestamptz: 'timestamp with time zone' };

/** The row extract_event returns and the pipeline's batch table holds. */
export function emitExtractedType(m: Model): string {
  const t = 'spectrum.extracted_event';
  const cols = [
    { name: 'raw_id', sqlType: 'uuid' },
    { name: 'received_at', sqlType: 'timestamptz' },
    { name: 'error_msg', sqlType: 'text' },
    { name: 'geo_id', sqlType: 'uuid' },
    ...m.fields.map((f) => ({ name: f.name, sqlType: f.sqlType })),
  ];
  // Attributes are only ever added (build refuses removals), so a deployed type is widened
  // in place and the functions that return it keep working.
  const adds = cols
    .map(
      (c) => `  if not exists (select from pg_catalog.pg_attribute
                  where attrelid = ${literal(t)}::regclass and attname = ${literal(c.name)} and not attisdropped) then
    alter type ${t} add attribute ${ident(c.name)} ${c.sqlType};
  end if;`,
    )
    .join('\n');
  const want = cols.map((c) => `${c.name} ${CATALOG_TYPE[c.sqlType] ?? c.sqlType}`).join(', ');
  // extract_event fills the type by position: after a hand-written change (a rename, a type
  // change, a removal) that left the type out of step with the spec, stop the migration here
  // rather than let the functions put values into the wrong attributes.
  return `${GENERATED('extracted_event: one payload as the pipeline reads it: typed fields, or error_msg.\nReturned by spectrum.extract_event and held, one row per claimed event, in the batch table.')}
do $$
declare
  v_have text;
begin
  if to_regtype(${literal(t)}) is null then
    create type ${t} as (${cols.map((c) => `${ident(c.name)} ${c.sqlType}`).join(', ')});
  end if;
${adds}
  select string_agg(attname || ' ' || pg_catalog.format_type(atttypid, atttypmod), ', ' order by attnum)
    into v_have
    from pg_catalog.pg_attribute
   where attrelid = ${literal(t)}::regclass and attnum > 0 and not attisdropped;
  if v_have is distinct from ${literal(want)} then
    raise exception '${t} does not match the spec: it has (%)', v_have
      using hint = ${literal(`Its attributes must be, in this order: (${want}). Alter the type by hand at the top of migrations/current.sql (alter type ${t} rename / drop / alter attribute …), then npm run build.`)},
            errcode = '55000';
  end if;
end
$$;

comment on type ${t} is 'One payload as the pipeline interprets it: the typed fields, or error_msg saying why it fails.';
`;
}

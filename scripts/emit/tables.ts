/*
 * Emitters for the spec-shaped tables and the extracted-row type. Each is rerunnable and
 * additive: `create … if not exists` with every column, then `add column if not exists` for
 * every non-key column, so the same text creates a fresh table or widens a deployed one
 * without rewriting it (nullable columns without defaults are catalog-only changes).
 */
import { SQL_TYPES, type FieldModel, type Model } from '../spec/model.ts';
import { commentOn, GENERATED, ident, literal, wrap } from './sql.ts';

const col = (f: FieldModel) => `${ident(f.name)} ${f.sqlType}`;
const seenCol = (f: FieldModel) => ident(`${f.name}_seen_at`);

function addColumns(table: string, cols: FieldModel[], seen = false): string {
  const add = `alter table ${table} add column if not exists`;
  return cols
    .map((f) => `${add} ${col(f)};\n${seen ? `${add} ${seenCol(f)} timestamptz;\n` : ''}`)
    .join('');
}
const seenCols = (attrs: FieldModel[]) =>
  attrs.map((f) => `  ${col(f)},\n  ${seenCol(f)} timestamptz,\n`).join('');

function comments(table: string, cols: FieldModel[], seen = false): string {
  const newest = seen ? ': the value of the newest event that names it' : '';
  const lines = cols.flatMap((f) => [
    commentOn(`column ${table}.${ident(f.name)}`, `From payload ${f.label} (${f.type})${newest}.`),
    ...(seen
      ? [
          commentOn(
            `column ${table}.${seenCol(f)}`,
            `occurred_at of the event ${f.name} was taken from.`,
          ),
        ]
      : []),
  ]);
  return lines.map((l) => `${l}\n`).join('');
}

export function emitDimAccounts(m: Model): string {
  const t = 'spectrum.dim_accounts';
  const attrs = m.dims.accounts;
  return `${GENERATED(
    import.meta.url,
    'dim_accounts: one row per account seen in a processed event.\n' +
      'Upserted by spectrum.process_claimed; first/last_seen_at only ever widen.',
  )}
create table if not exists ${t} (
  account_id uuid not null,
  first_seen_at timestamptz not null,
  last_seen_at timestamptz not null,
${seenCols(attrs)}  constraint dim_accounts_pkey primary key (account_id)
);
${addColumns(t, attrs, true)}
${commentOn(
  `table ${t}`,
  'One row per account_id seen in a processed event, with the occurred_at range it was seen in.',
)}

grant select on ${t} to spectrum_reader;
${comments(t, attrs, true)}`;
}

export function emitDimUsers(m: Model): string {
  const t = 'spectrum.dim_users';
  const attrs = m.dims.users;
  return `${GENERATED(
    import.meta.url,
    'dim_users: one row per (account_id, user_id) seen in a processed event.\n' +
      'Anonymous events (no user_id) have no row here.',
  )}
create table if not exists ${t} (
  account_id uuid not null,
  user_id text not null,
  first_seen_at timestamptz not null,
  last_seen_at timestamptz not null,
${seenCols(attrs)}  constraint dim_users_pkey primary key (account_id, user_id),
  constraint dim_users_account_fkey foreign key (account_id)
    references spectrum.dim_accounts (account_id)
);
${addColumns(t, attrs, true)}
${commentOn(
  `table ${t}`,
  'One row per (account_id, user_id) seen in a processed event, with the occurred_at range ' +
    'it was seen in.',
)}

grant select on ${t} to spectrum_reader;
${comments(t, attrs, true)}`;
}

export function emitDimGeography(m: Model): string {
  const t = 'spectrum.dim_geography';
  const attrs = m.dims.geography;
  const triple = attrs.map((f) => ident(f.name)).join(', ');
  const keys = [
    '  constraint dim_geography_pkey primary key (geo_id)',
    ...(triple
      ? [`  constraint dim_geography_place_key unique nulls not distinct (${triple})`]
      : []),
  ];
  return `${GENERATED(
    import.meta.url,
    'dim_geography: one row per distinct place (NULLs equal).\n' +
      'geo_id is deterministic: md5 of the normalised attributes as a JSON array, so every\n' +
      'session (and every shard, later) derives the same key without a sequence.',
  )}
create table if not exists ${t} (
  geo_id uuid not null,
${attrs.map((f) => `  ${col(f)},\n`).join('')}${keys.join(',\n')}
);
${addColumns(t, attrs)}
${commentOn(
  `table ${t}`,
  'One row per distinct place; geo_id = md5 of the normalised attributes, so it is stable ' +
    'across sessions.',
)}

grant select on ${t} to spectrum_reader;
${comments(t, attrs)}`;
}

export function emitFactEvents(m: Model): string {
  const t = 'spectrum.fact_events';
  const extras = m.factExtras;
  const pkey = '  constraint fact_events_pkey primary key (account_id, event_id, occurred_at)';
  return `${GENERATED(
    import.meta.url,
    'fact_events: one row per distinct event (event_id), partitioned by month of occurred_at.\n' +
      'Partitions are created by spectrum.ensure_fact_partitions (never a default partition).',
  )}
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
${extras.map((f) => `  ${col(f)},\n`).join('')}${pkey},
  constraint fact_events_account_fkey foreign key (account_id)
    references spectrum.dim_accounts (account_id),
  constraint fact_events_user_fkey foreign key (account_id, user_id)
    references spectrum.dim_users (account_id, user_id),
  constraint fact_events_geo_fkey foreign key (geo_id)
    references spectrum.dim_geography (geo_id)
) partition by range (occurred_at);
${addColumns(t, extras)}
${commentOn(
  `table ${t}`,
  'One row per distinct event (event_id), reflecting its most recently received version; ' +
    'partitioned by month of occurred_at.',
)}

grant select on ${t} to spectrum_reader;
${comments(t, extras)}`;
}

/** What pg_catalog.format_type says for a sqlType, to compare the deployed type with the spec. */
const CATALOG_TYPE: Record<string, string> = { timestamptz: 'timestamp with time zone' };
/** The only types the attribute loop's `%s` may receive (names go through %I). */
const ATTRIBUTE_TYPES = new Set(Object.values(SQL_TYPES));

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
  for (const c of cols)
    if (!ATTRIBUTE_TYPES.has(c.sqlType))
      throw new Error(`extracted_event: ${c.name} has type ${c.sqlType}, not one of the list`);
  const pairs = cols.map((c) => `[${literal(c.name)}, ${literal(c.sqlType)}]`);
  const want = cols.map((c) => `${c.name} ${CATALOG_TYPE[c.sqlType] ?? c.sqlType}`);
  // The expected shape as one text literal, cut into lines joined by ||.
  const wantLines = wrap(want, 84);
  const wantText = wantLines
    .map((l, i) => literal(i < wantLines.length - 1 ? `${l}, ` : l))
    .join(' ||\n    ');
  return `${GENERATED(
    import.meta.url,
    'extracted_event: one payload as the pipeline reads it: typed fields, or error_msg.\n' +
      'Returned by spectrum.extract_event; one row per claimed event in the batch table.\n' +
      'Attributes are only ever added (build refuses removals), so a deployed type widens in\n' +
      'place. extract_event fills it by position: a type out of step with the spec stops here.',
  )}
do $$
declare
  v_attr text[];
  v_have text;
  v_want constant text :=
    ${wantText};
begin
  if to_regtype(${literal(t)}) is null then
    create type ${t} as (
      ${wrap(cols.map((c) => `${ident(c.name)} ${c.sqlType}`)).join(',\n      ')}
    );
  end if;
  foreach v_attr slice 1 in array array[
    ${wrap(pairs).join(',\n    ')}
  ] loop
    if not exists (select from pg_catalog.pg_attribute
                    where attrelid = ${literal(t)}::regclass and attname = v_attr[1]
                      and not attisdropped) then
      execute format('alter type ${t} add attribute %I %s',
                     v_attr[1], v_attr[2]);
    end if;
  end loop;
  select string_agg(attname || ' ' || pg_catalog.format_type(atttypid, atttypmod), ', '
                    order by attnum)
    into v_have
    from pg_catalog.pg_attribute
   where attrelid = ${literal(t)}::regclass and attnum > 0 and not attisdropped;
  if v_have is distinct from v_want then
    raise exception '${t} does not match the spec: it has (%)', v_have
      using hint = format('Its attributes must be, in this order: (%s). '
                          || 'Alter the type by hand at the top of migrations/current.sql '
                          || '(alter type ${t}'
                          || ' rename / drop / alter attribute …), then npm run build.', v_want),
            errcode = '55000';
  end if;
end
$$;

${commentOn(
  `type ${t}`,
  'One payload as the pipeline interprets it: the typed fields, or error_msg saying why it fails.',
)}
`;
}

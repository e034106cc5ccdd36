/*
 * spec → model: validates an EventSpec and derives what the emitters need. Every error names
 * the spec entry (`fields[3] (user_id): …`) so a DBA can find it.
 */
import {
  FIELD_TYPES,
  ROLES,
  TARGETS,
  type EventSpec,
  type FieldSpec,
  type FieldType,
  type Role,
  type Target,
} from './types.ts';

export class SpecError extends Error {
  override name = 'SpecError';
}

export interface FieldModel extends FieldSpec {
  /** Where the value sits, as the producer writes it: `geo.country`. */
  label: string;
  /** Position in the spec (0-based): names the extraction's internal columns, which must not
   *  collide with field names or PL/pgSQL variables whatever the fields are called. */
  position: number;
  /** The SQL type of the extracted column. */
  sqlType: string;
  /** Where the value lands: a core fact column, an extra fact column or a dimension. */
  lands: Target;
}

export interface Model {
  spec: EventSpec;
  fields: FieldModel[];
  role: Record<Role, FieldModel>;
  /** Non-core fact columns, in spec order. */
  factExtras: FieldModel[];
  dims: { accounts: FieldModel[]; users: FieldModel[]; geography: FieldModel[] };
  /** Parent objects named by paths (['geo'] for geo.country): each must be an object if present. */
  parents: string[][];
}

/** The SQL type each spec type becomes: the only types generated SQL declares for a field. */
export const SQL_TYPES: Record<FieldType, string> = {
  text: 'text',
  uuid: 'uuid',
  timestamptz: 'timestamptz',
  integer: 'integer',
  bigint: 'bigint',
  numeric: 'numeric',
  boolean: 'boolean',
  object: 'jsonb',
};

const ROLE_TYPES: Record<Role, FieldType> = {
  event_id: 'uuid',
  event_type: 'text',
  account_id: 'uuid',
  user_id: 'text',
  occurred_at: 'timestamptz',
  properties: 'object',
};

/** Column names the generated tables use for themselves. */
const RESERVED = new Set([
  'raw_id',
  'raw_event_id',
  'received_at',
  'error_msg',
  'geo_id',
  'first_seen_at',
  'last_seen_at',
  'outcome',
  'prev_account_id',
  'prev_occurred_at',
  'payload',
  'status',
  'attempts',
  'processed_at',
  'id',
]);

/**
 * PostgreSQL's reserved keywords (pg_get_keywords() categories R and T): a column named so must
 * be quoted in every query.
 */
const SQL_KEYWORDS = new Set(
  (
    'all analyse analyze and any array as asc asymmetric authorization binary both case cast ' +
    'check collate collation column concurrently constraint create cross current_catalog ' +
    'current_date current_role current_schema current_time current_timestamp current_user ' +
    'default deferrable desc distinct do else end except false fetch for foreign freeze from ' +
    'full grant group having ilike in initially inner intersect into is isnull join lateral ' +
    'leading left like limit localtime localtimestamp natural not notnull null offset on only ' +
    'or order outer overlaps placing primary references returning right select session_user ' +
    'similar some symmetric table tablesample then to trailing true union unique user using ' +
    'variadic verbose when where window with'
  ).split(' '),
);

/** The defaults, and the one type each applies to. */
const DEFAULT_TYPES: Record<NonNullable<FieldSpec['default']>, FieldType> = {
  raw_id: 'uuid',
  received_at: 'timestamptz',
  empty_object: 'object',
};

const NAME = /^[a-z_][a-z0-9_]*$/;
const INTERVAL = /^\d+ (year|month|day|hour|minute)s?$/;

export function buildModel(spec: EventSpec): Model {
  const problems: string[] = [];
  const fail = (where: string, what: string) => problems.push(`${where}: ${what}`);

  for (const k of ['maxPayloadBytes', 'maxTextLength'] as const) {
    const v = spec.limits?.[k];
    if (!Number.isInteger(v) || v <= 0)
      fail(`limits.${k}`, `must be a positive integer, got ${JSON.stringify(v)}`);
  }
  for (const k of ['before', 'after'] as const) {
    const v = spec.window?.[k];
    if (typeof v !== 'string' || !INTERVAL.test(v))
      fail(`window.${k}`, `must look like '5 years' or '1 day', got ${JSON.stringify(v)}`);
  }

  if (!Array.isArray(spec.fields)) {
    fail('fields', 'must be a list of fields');
    throw new SpecError(`the event spec is invalid:\n  ${problems.join('\n  ')}`);
  }
  const seen = new Map<string, number>();
  const roles = new Map<Role, FieldModel>();
  const fields: FieldModel[] = [];
  spec.fields.forEach((f, i) => {
    const where = `fields[${i}] (${f.name})`;
    if (typeof f.name !== 'string' || !NAME.test(f.name))
      fail(where, 'name must be lowercase snake_case (a-z, 0-9, _)');
    else if (Buffer.byteLength(f.name) > 63) fail(where, 'name is longer than 63 bytes');
    else if (RESERVED.has(f.name))
      fail(where, `name "${f.name}" is reserved for the generated tables: choose another`);
    else if (/^(p|v)_/.test(f.name) || /^(f\d+_(json|text|value)|parent\d+)$/.test(f.name))
      fail(
        where,
        'names starting with p_ or v_, and f<N>_json/_text/_value or parent<N>, are reserved ' +
          'for the generated functions: choose another',
      );
    else if (f.name.endsWith('_seen_at'))
      fail(
        where,
        'names ending in _seen_at are reserved (a dimension attribute x gets a column ' +
          'x_seen_at): choose another',
      );
    else if (Buffer.byteLength(f.name) > 55 && (f.target === 'accounts' || f.target === 'users'))
      fail(
        where,
        'a dimension attribute name must leave room for its _seen_at column (55 bytes at most)',
      );
    else if (SQL_KEYWORDS.has(f.name))
      fail(
        where,
        `name "${f.name}" is an SQL keyword that every query would have to quote: choose another`,
      );
    if (seen.has(f.name)) fail(where, `duplicate name: fields[${seen.get(f.name)}] has it already`);
    seen.set(f.name, i);
    if (!FIELD_TYPES.includes(f.type))
      fail(where, `unknown type ${JSON.stringify(f.type)}: use one of ${FIELD_TYPES.join(', ')}`);
    if (
      !Array.isArray(f.path) ||
      f.path.length === 0 ||
      f.path.some((k) => typeof k !== 'string' || k === '')
    )
      fail(where, 'path must be a non-empty list of non-empty keys');
    if (f.role && f.target) fail(where, 'has both role and target: a field lands in one place');
    if (!f.role && !f.target)
      fail(where, `needs a role (${ROLES.join(', ')}) or a target (${TARGETS.join(', ')})`);
    if (f.role && !ROLES.includes(f.role)) fail(where, `unknown role ${JSON.stringify(f.role)}`);
    if (f.target && !TARGETS.includes(f.target))
      fail(where, `unknown target ${JSON.stringify(f.target)}`);
    if (f.role && ROLE_TYPES[f.role] && f.type !== ROLE_TYPES[f.role])
      fail(where, `role ${f.role} must have type ${ROLE_TYPES[f.role]}`);
    if (f.role && f.name !== f.role)
      fail(where, `a field with role ${f.role} must be named ${f.role}`);
    if (f.role && roles.has(f.role))
      fail(where, `role ${f.role} is already given to ${roles.get(f.role)!.name}`);
    if (f.acceptNumbers && f.type !== 'text')
      fail(where, 'acceptNumbers applies only to text fields');
    if (f.trim && f.type !== 'text') fail(where, 'trim applies only to text fields');
    if (f.required && f.default) fail(where, 'a required field cannot have a default');
    if (f.default !== undefined && !Object.hasOwn(DEFAULT_TYPES, f.default))
      fail(
        where,
        `unknown default ${JSON.stringify(f.default)}: ` +
          `use one of ${Object.keys(DEFAULT_TYPES).join(', ')}`,
      );
    else if (f.default !== undefined && f.type !== DEFAULT_TYPES[f.default])
      fail(where, `default '${f.default}' applies only to ${DEFAULT_TYPES[f.default]} fields`);
    const model: FieldModel = {
      ...f,
      label: (f.path ?? []).join('.'),
      position: i,
      sqlType: SQL_TYPES[f.type] ?? 'text',
      lands: f.target ?? 'fact',
    };
    if (f.role) roles.set(f.role, model);
    fields.push(model);
  });
  for (const r of ROLES)
    if (!roles.has(r)) fail('fields', `no field has role ${r}: every spec needs one`);
  const need = (r: Role, ok: (f: FieldModel) => boolean, what: string) => {
    const f = roles.get(r);
    if (f && !ok(f)) fail(`fields[${fields.indexOf(f)}] (${f.name})`, what);
  };
  need('event_type', (f) => !!f.required, 'event_type must be required');
  need('account_id', (f) => !!f.required, 'account_id must be required');
  need(
    'event_id',
    (f) => f.default === 'raw_id' || !!f.required,
    "event_id needs default 'raw_id' or required",
  );
  need(
    'occurred_at',
    (f) => f.default === 'received_at' || !!f.required,
    "occurred_at needs default 'received_at' or required",
  );
  if (problems.length)
    throw new SpecError(`the event spec is invalid:\n  ${problems.join('\n  ')}`);

  const parents = new Map<string, string[]>();
  for (const f of fields)
    for (let n = 1; n < f.path.length; n++)
      parents.set(JSON.stringify(f.path.slice(0, n)), f.path.slice(0, n));
  for (const p of parents.values()) {
    const i = fields.findIndex((f) => JSON.stringify(f.path) === JSON.stringify(p));
    if (i >= 0) {
      const users = fields.filter(
        (f) =>
          f.path.length > p.length &&
          JSON.stringify(f.path.slice(0, p.length)) === JSON.stringify(p),
      );
      fail(
        `fields[${i}] (${fields[i]!.name})`,
        `path ${fields[i]!.label} is also the parent of ` +
          `${users.map((f) => f.name).join(', ')}: a value cannot be both`,
      );
    }
  }
  if (problems.length)
    throw new SpecError(`the event spec is invalid:\n  ${problems.join('\n  ')}`);
  return {
    spec,
    fields,
    role: Object.fromEntries(roles) as Record<Role, FieldModel>,
    factExtras: fields.filter((f) => !f.role && f.lands === 'fact'),
    dims: {
      accounts: fields.filter((f) => f.lands === 'accounts'),
      users: fields.filter((f) => f.lands === 'users'),
      geography: fields.filter((f) => f.lands === 'geography'),
    },
    parents: [...parents.values()],
  };
}

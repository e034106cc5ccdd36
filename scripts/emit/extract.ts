/*
 * The extraction: one SELECT that turns (raw_id, received_at, payload) rows into typed
 * extracted_event rows without ever raising. Cheap shape tests guard the plain casts; only
 * values that fail the shape test go through the exception-wrapped spectrum.try_* casts.
 * The same text is embedded in spectrum.extract_event and spectrum.process_claimed.
 *
 * Each level is a subquery fenced by `offset 0`, so that a value is computed once per row and
 * not once per reference: l0 detoasts the payload (a compressed payload would otherwise be
 * decompressed by every `->`, which let a 1 MB payload of 80 MB JSON take gigabytes of
 * memory), l1 picks the JSON values, l2 their text, l3 the typed values.
 */
import type { FieldModel, Model } from '../spec/model.ts';
import { GENERATED, ident, indent, jsonPath, literal } from './sql.ts';

// Internal columns are named by position, never by field name: `f3_json` cannot collide with
// a field, a parent key or a PL/pgSQL variable of the functions that embed this SELECT.
const j = (f: FieldModel) => `f${f.position}_json`;
const s = (f: FieldModel) => `f${f.position}_text`;
const v = (f: FieldModel) => `f${f.position}_value`;
const hasText = (f: FieldModel) =>
  f.type === 'text' || f.type === 'uuid' || f.type === 'timestamptz';

const TS_FRACS = ['', '.000', '.000000'];
const TS_SHAPES = TS_FRACS.flatMap((frac) =>
  ['', 'Z'].map((z) => `0000-00-00T00:00:00${frac}${z}`),
);
const TS_OFFSET_SHAPES = TS_FRACS.flatMap((frac) =>
  ['+', '-'].map((sign) => `0000-00-00T00:00:00${frac}${sign}00:00`),
);
const MONTHS_31 = ['01', '03', '05', '07', '08', '10', '12'];
/** The bytes of the hex digits 0-9, a-f and A-F (decode is immutable: folded once per plan; no backslash, whatever standard_conforming_strings says). */
const HEX_BYTES = `decode('${Buffer.from('0123456789abcdefABCDEF').toString('hex')}', 'hex')`;
/** What `trim: true` strips: ASCII whitespace (btrim alone strips only spaces). */
const WHITESPACE = `E' \\t\\n\\x0b\\f\\r'`;

/** The text of a JSON string (or number, for text fields that accept numbers); else null. */
function textOf(f: FieldModel): string {
  const types = f.type === 'text' && f.acceptNumbers ? `in ('string', 'number')` : `= 'string'`;
  return `case when jsonb_typeof(${j(f)}) ${types} then ${j(f)} #>> '{}' end`;
}

/** A plain-cast-safe ISO-8601 timestamp: every digit in place and every field in range. */
function timestampShape(x: string): string {
  const sub = (from: number, len = 2) => `substr(${x}, ${from}, ${len})`;
  const shape = `translate(${x}, '0123456789', '0000000000')`;
  return `(${shape} in (${TS_SHAPES.map(literal).join(', ')})
        or (${shape} in (${TS_OFFSET_SHAPES.map(literal).join(', ')})
            and substr(${x}, length(${x}) - 4, 2) < '16' and right(${x}, 2) < '60'))
       and left(${x}, 4) > '0000' and ${sub(6)} between '01' and '12'
       and (${sub(9)} between '01' and '28' or (${sub(9)} in ('29', '30') and ${sub(6)} <> '02')
            or (${sub(9)} = '31' and ${sub(6)} in (${MONTHS_31.map(literal).join(', ')})))
       and ${sub(12)} < '24' and ${sub(15)} < '60' and ${sub(18)} < '60'`;
}

function typedValue(f: FieldModel): string {
  const x = j(f);
  switch (f.type) {
    case 'text':
      return f.trim ? `nullif(btrim(${s(f)}, ${WHITESPACE}), '')` : s(f);
    case 'uuid': {
      const dflt = f.default === 'raw_id' ? `when ${x} is null then raw_id\n  ` : '';
      // The canonical form, checked byte by byte: 36 bytes, the four hyphens in place and no
      // other, the rest hex digits (btrim over bytea compares bytes; over text it decodes each
      // character, and translate() is slower still: 1.3-1.6 against 4.6 µs per value).
      // uuid_in takes 32 hex digits, a hyphen after any group of four, and braces: 32 to 41 characters.
      return `case ${dflt}when octet_length(${s(f)}) = 36 and ${s(f)} like '________-____-____-____-____________'
       and octet_length(replace(${s(f)}, '-', '')) = 32
       and btrim(textsend(replace(${s(f)}, '-', '')), ${HEX_BYTES}) = ''::bytea then ${s(f)}::uuid
  when length(${s(f)}) between 32 and 41 then spectrum.try_uuid(${s(f)}) end`;
    }
    case 'timestamptz': {
      const dflt = f.default === 'received_at' ? `when ${x} is null then received_at\n  ` : '';
      return `case ${dflt}when ${timestampShape(s(f))} then ${s(f)}::timestamptz
  else spectrum.try_timestamptz(${s(f)}) end`;
    }
    case 'integer':
    case 'bigint': {
      const [lo, hi] =
        f.type === 'integer'
          ? ['-2147483648', '2147483647']
          : ['-9223372036854775808', '9223372036854775807'];
      return `case when jsonb_typeof(${x}) = 'number' and ${x}::numeric = trunc(${x}::numeric)
       and ${x}::numeric between ${lo} and ${hi} then ${x}::numeric::${f.type} end`;
    }
    case 'numeric':
      return `case when jsonb_typeof(${x}) = 'number' then ${x}::numeric end`;
    case 'boolean':
      return `case when jsonb_typeof(${x}) = 'boolean' then ${x}::boolean end`;
    case 'object': {
      const dflt = f.default === 'empty_object' ? `when ${x} is null then '{}'::jsonb ` : '';
      return `case ${dflt}when jsonb_typeof(${x}) = 'object' then ${x} end`;
    }
  }
}

const KIND: Record<FieldModel['type'], string> = {
  text: 'a string',
  uuid: 'a uuid',
  timestamptz: 'an ISO-8601 timestamp',
  integer: 'an integer in range',
  bigint: 'an integer in range',
  numeric: 'a number',
  boolean: 'a boolean',
  object: 'an object',
};

/** `label: <value> <problem>` with the value shown as a short JSON excerpt. */
const bad = (f: FieldModel, problem: string) =>
  `${literal(`${f.label}: `)} || spectrum.json_excerpt(${j(f)}) || ${literal(` ${problem}`)}`;

function fieldError(f: FieldModel, m: Model): string {
  const x = j(f);
  const val = v(f);
  const max = m.spec.limits.maxTextLength;
  const arms: string[] = [
    `when ${x} is null then ${f.required ? literal(`${f.label}: missing`) : 'null'}`,
  ];
  if (f.type === 'text') {
    const types = f.acceptNumbers ? `('string', 'number')` : `('string')`;
    arms.push(
      `when jsonb_typeof(${x}) not in ${types} then ${bad(f, `is not ${f.acceptNumbers ? 'a string or number' : 'a string'}`)}`,
    );
    if (f.required)
      arms.push(`when ${val} is null then ${literal(`${f.label}: must not be empty`)}`);
    if (!f.trim)
      arms.push(
        `when ${val} = '' then ${literal(`${f.label}: must not be empty${f.required ? '' : ' (leave it out instead)'}`)}`,
      );
    arms.push(
      `when length(${val}) > ${max} then ${literal(`${f.label}: text of `)} || length(${val}) || ${literal(` characters exceeds limits.maxTextLength (${max})`)}`,
    );
  } else {
    arms.push(`when ${val} is null then ${bad(f, `is not ${KIND[f.type]}`)}`);
  }
  if (f.type === 'timestamptz') {
    const { before, after } = m.spec.window;
    arms.push(
      `when ${val} < received_at - interval ${literal(before)} or ${val} > received_at + interval ${literal(after)}
    then ${bad(f, `is outside the accepted window (${before} before to ${after} after received_at)`)}`,
    );
  }
  return `case\n    ${arms.join('\n    ')}\n  end`;
}

/** One fenced level: `offset 0` keeps the planner from pulling it up and recomputing its columns per reference. */
const level = (cols: string[], from: string, alias: string) => `select
${indent(cols.join(',\n'))}
from (
${indent(from)}
) ${alias}
offset 0`;

/**
 * The extraction SELECT over `source`, a relation with columns raw_id, received_at, payload.
 * Output columns follow spectrum.extracted_event: raw_id, received_at, error_msg, geo_id, fields.
 * The payload size is that of the uncompressed jsonb, so extract_event (given the value) and
 * the pipeline (reading it from a possibly compressed row) measure the same number.
 */
export function extractSelect(m: Model, source: string): string {
  const parentCol = (p: string[]) => `parent${m.parents.indexOf(p)}`;
  const max = m.spec.limits.maxPayloadBytes;
  const geo = m.dims.geography;
  const texts = m.fields.filter(hasText);
  const guarded = (expr: string) => `case when pg_column_size(payload) <= ${max} then ${expr} end`;
  const l0 = `select raw_id, received_at, payload #> '{}'::text[] as payload\n  from ${source}\n offset 0`;
  const l1 = [
    'raw_id',
    'received_at',
    'jsonb_typeof(payload) as payload_type',
    'pg_column_size(payload) as payload_bytes',
    ...m.parents.map((p) => `${guarded(jsonPath('payload', p))} as ${parentCol(p)}`),
    ...m.fields.map(
      (f) => `${guarded(`nullif(${jsonPath('payload', f.path)}, 'null'::jsonb)`)} as ${j(f)}`,
    ),
  ];
  const carried = [
    'raw_id',
    'received_at',
    'payload_type',
    'payload_bytes',
    ...m.parents.map(parentCol),
    ...m.fields.map(j),
  ];
  const l2 = [...carried, ...texts.map((f) => `${textOf(f)} as ${s(f)}`)];
  const l3 = [...carried, ...m.fields.map((f) => `${typedValue(f)} as ${v(f)}`)];
  const errors = [
    ...m.parents.map(
      (p) =>
        `case when jsonb_typeof(${parentCol(p)}) not in ('object', 'null') then ${literal(`${p.join('.')}: `)} || spectrum.json_excerpt(${parentCol(p)}) || ' is not an object' end`,
    ),
    ...m.fields.map((f) => fieldError(f, m)),
  ];
  const errorMsg = `case
    when payload_type is distinct from 'object' then 'payload: is not a JSON object'
    when payload_bytes > ${max} then 'payload: ' || payload_bytes || ' bytes exceeds limits.maxPayloadBytes (${max})'
    else nullif(concat_ws('; ',
${indent(errors.join(',\n'), 6)}
    ), '')
  end`;
  const geoId = geo.length
    ? `case when coalesce(${geo.map(v).join(', ')}) is not null
    then md5(jsonb_build_array(${geo.map(v).join(', ')})::text)::uuid end`
    : 'null::uuid';
  const out = [
    'raw_id',
    'received_at',
    `${errorMsg} as error_msg`,
    `${geoId} as geo_id`,
    ...m.fields.map((f) => `${v(f)} as ${ident(f.name)}`),
  ];
  const nested = level(l3, level(l2, level(l1, l0, 'l0'), 'l1'), 'l2');
  return `select
${indent(out.join(',\n'))}
from (
${indent(nested)}
) l3`;
}

export function emitExtractEvent(m: Model): string {
  return `${GENERATED('extract_event: how one payload is interpreted, for an operator in psql.\nThe extraction SELECT is the same generated text that spectrum.process_claimed runs.\nTimestamps without an offset are UTC, as in the pipeline; the search_path is fixed so that\nno function or operator a caller put earlier in theirs can change the interpretation.')}
create or replace function spectrum.extract_event(
  p_payload jsonb,
  p_received_at timestamptz default now(),
  p_raw_id uuid default null
)
returns spectrum.extracted_event
language plpgsql
volatile
set timezone = 'UTC'
set search_path = pg_catalog, pg_temp
as $$
declare
  v_row spectrum.extracted_event;
begin
${indent(extractSelect(m, '(select p_raw_id as raw_id, p_received_at as received_at, p_payload as payload) source'), 2)}
  into v_row;
  return v_row;
end
$$;

comment on function spectrum.extract_event(jsonb, timestamptz, uuid) is
  'Shows how one payload is interpreted: the typed fields, or the error_msg process_pending would record. p_received_at (default now()) anchors the accepted time window; p_raw_id stands in for the raw row id.';

revoke all on function spectrum.extract_event(jsonb, timestamptz, uuid) from public;
grant execute on function spectrum.extract_event(jsonb, timestamptz, uuid) to spectrum_operator;
`;
}

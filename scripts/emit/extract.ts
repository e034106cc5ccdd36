/*
 * The extraction: one SELECT that turns (raw_id, received_at, payload) rows into typed
 * extracted_event rows without ever raising. Cheap shape tests guard the plain casts; only
 * values that fail the shape test go through the exception-wrapped spectrum.try_* casts.
 * The same text is embedded in spectrum.extract_event and spectrum.process_claimed.
 */
import type { FieldModel, Model } from '../spec/model.ts';
import { GENERATED, ident, indent, jsonPath, literal } from './sql.ts';

const j = (f: FieldModel) => ident(`j_${f.name}`);
const v = (f: FieldModel) => ident(`v_${f.name}`);
const parentCol = (p: string[]) => ident(`p_${p.join('_')}`);
const str = (x: string) => `(${x} #>> '{}')`;

const TS_SHAPES = ['', '.000', '.000000'].flatMap((frac) => ['', 'Z'].map((z) => `0000-00-00T00:00:00${frac}${z}`));
const TS_OFFSET_SHAPES = ['', '.000', '.000000'].map((frac) => `0000-00-00T00:00:00${frac}+00:00`);

function typedValue(f: FieldModel): string {
  const x = j(f);
  const s = str(x);
  switch (f.type) {
    case 'text': {
      const num = f.acceptNumbers ? ` when jsonb_typeof(${x}) = 'number' then ${s}` : '';
      const base = `case when jsonb_typeof(${x}) = 'string' then ${s}${num} end`;
      return f.trim ? `nullif(btrim(${base}), '')` : base;
    }
    case 'uuid': {
      const dflt = f.default === 'raw_id' ? `when ${x} is null then raw_id\n  ` : '';
      return `case ${dflt}when jsonb_typeof(${x}) <> 'string' then null
  when length(${s}) = 36 and ${s} like '________-____-____-____-____________'
       and translate(${s}, '0123456789abcdefABCDEF-', '') = '' then ${s}::uuid
  else spectrum.try_uuid(${s}) end`;
    }
    case 'timestamptz': {
      const dflt = f.default === 'received_at' ? `when ${x} is null then received_at\n  ` : '';
      const shape = `translate(${s}, '0123456789', '0000000000')`;
      return `case ${dflt}when jsonb_typeof(${x}) <> 'string' then null
  when (${shape} in (${TS_SHAPES.map(literal).join(', ')})
        or (${shape} in (${TS_OFFSET_SHAPES.map(literal).join(', ')}) and substr(${s}, length(${s}) - 4, 2) < '16'))
       and left(${s}, 4) > '0000' and substr(${s}, 6, 2) between '01' and '12' and substr(${s}, 9, 2) between '01' and '28'
       and substr(${s}, 12, 2) < '24' and substr(${s}, 15, 2) < '60' and substr(${s}, 18, 2) < '60' then ${s}::timestamptz
  else spectrum.try_timestamptz(${s}) end`;
    }
    case 'integer':
    case 'bigint': {
      const [lo, hi] = f.type === 'integer' ? ['-2147483648', '2147483647'] : ['-9223372036854775808', '9223372036854775807'];
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
  const arms: string[] = [`when ${x} is null then ${f.required ? literal(`${f.label}: missing`) : 'null'}`];
  if (f.type === 'text') {
    const types = f.acceptNumbers ? `('string', 'number')` : `('string')`;
    arms.push(`when jsonb_typeof(${x}) not in ${types} then ${bad(f, `is not ${f.acceptNumbers ? 'a string or number' : 'a string'}`)}`);
    if (f.required) arms.push(`when ${val} is null then ${literal(`${f.label}: must not be empty`)}`);
    if (!f.trim) arms.push(`when ${val} = '' then ${literal(`${f.label}: must not be empty${f.required ? '' : ' (leave it out instead)'}`)}`);
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

/**
 * The extraction SELECT over `source`, a relation with columns raw_id, received_at, payload.
 * Output columns follow spectrum.extracted_event: raw_id, received_at, error_msg, geo_id, fields.
 */
export function extractSelect(m: Model, source: string): string {
  const max = m.spec.limits.maxPayloadBytes;
  const geo = m.dims.geography;
  const l1 = [
    'raw_id',
    'received_at',
    'jsonb_typeof(payload) as payload_type',
    'pg_column_size(payload) as payload_bytes',
    ...m.parents.map((p) => `case when pg_column_size(payload) <= ${max} then ${jsonPath('payload', p)} end as ${parentCol(p)}`),
    ...m.fields.map((f) => `case when pg_column_size(payload) <= ${max} then nullif(${jsonPath('payload', f.path)}, 'null'::jsonb) end as ${j(f)}`),
  ];
  const l2 = [
    'raw_id',
    'received_at',
    'payload_type',
    'payload_bytes',
    ...m.parents.map(parentCol),
    ...m.fields.map(j),
    ...m.fields.map((f) => `${typedValue(f)} as ${v(f)}`),
  ];
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
  const out = ['raw_id', 'received_at', `${errorMsg} as error_msg`, `${geoId} as geo_id`, ...m.fields.map((f) => `${v(f)} as ${ident(f.name)}`)];
  return `select
${indent(out.join(',\n'))}
from (
  select
${indent(l2.join(',\n'), 4)}
  from (
    select
${indent(l1.join(',\n'), 6)}
    from ${source}
  ) l1
  offset 0
) l2`;
}

export function emitExtractEvent(m: Model): string {
  return `${GENERATED('extract_event: how one payload is interpreted, for an operator in psql.\nThe extraction SELECT is the same generated text that spectrum.process_claimed runs.')}
create or replace function spectrum.extract_event(
  p_payload jsonb,
  p_received_at timestamptz default now(),
  p_raw_id uuid default null
)
returns spectrum.extracted_event
language plpgsql
volatile
as $$
declare
  v_timezone text := current_setting('timezone');
  v_row spectrum.extracted_event;
begin
  -- Timestamps without an offset are UTC, as in the pipeline.
  perform pg_catalog.set_config('timezone', 'UTC', true);
${indent(extractSelect(m, '(select p_raw_id as raw_id, p_received_at as received_at, p_payload as payload) source'), 2)}
  into v_row;
  perform pg_catalog.set_config('timezone', v_timezone, true);
  return v_row;
end
$$;

comment on function spectrum.extract_event(jsonb, timestamptz, uuid) is
  'Shows how one payload is interpreted: the typed fields, or the error_msg process_pending would record. p_received_at (default now()) anchors the accepted time window; p_raw_id stands in for the raw row id.';
`;
}

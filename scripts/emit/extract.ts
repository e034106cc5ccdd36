/*
 * The extraction: one SELECT that turns (raw_id, received_at, payload) rows into typed
 * extracted_event rows. It runs in two modes, chosen by the PL/pgSQL variable CAREFUL:
 *   - fast (the first attempt): a uuid or timestamp whose layout is right (separators in place,
 *     and for a timestamp every digit a digit) goes straight to its plain cast, which may still
 *     raise (a letter g in a uuid, 30 February);
 *   - careful (only when the fast attempt raised): full shape tests guard the plain casts, and
 *     values that fail them go through the exception-wrapped spectrum.try_* casts; it never
 *     raises for a bad value.
 * Both modes give every row the same outcome: what the fast mode casts is exactly what try_*
 * would accept, with the same value. extractAttempts runs the fast attempt, then the careful
 * one if the fast one raised a data exception. error_msg is built only for rows that fail one
 * cheap validity test (rowIsValid); geo_id only for rows with a place (process_claimed leaves
 * it unread and computes it once per distinct place of the batch instead).
 * The same text is embedded in spectrum.extract_event and spectrum.process_claimed, and both
 * files carry extractLegend: what each positional name holds, what each level computes. Each
 * level is a subquery fenced by `offset 0`; FENCES gives the reasons, written beside each fence.
 */
import type { FieldModel, Model } from '../spec/model.ts';
import {
  commentOn,
  commentText,
  GENERATED,
  ident,
  indent,
  jsonPath,
  literal,
  wrap,
} from './sql.ts';

// Internal columns are named by position, never by field name: `f3_json` cannot collide with
// a field, a parent key or a PL/pgSQL variable of the functions that embed this SELECT.
const j = (f: FieldModel) => `f${f.position}_json`;
const s = (f: FieldModel) => `f${f.position}_text`;
const v = (f: FieldModel) => `f${f.position}_value`;
const b = (f: FieldModel) => `f${f.position}_bits`;

/** The PL/pgSQL boolean that picks the careful mode; each embedding function declares it false. */
export const CAREFUL = 'v_careful';
const hasText = (f: FieldModel) =>
  f.type === 'text' || f.type === 'uuid' || f.type === 'timestamptz';

/**
 * Why each level is fenced (without `offset 0` the planner pulls it up into the level above), as
 * `--` lines to write above the fence.
 */
const FENCES = {
  l0:
    'fence: the payload is detoasted once per row; else every -> decompresses it again\n' +
    '(a 1 MB payload of 80 MB JSON took gigabytes of memory)',
  l1: 'fence: each path is looked up once per row, not at every use of its fN_json',
  l2: 'fence: each text is taken once per row, not at every use of its fN_text',
  l3: 'fence: each value is cast once per row; error_msg and the output both read fN_value',
};

const TS_FRACS = ['', '.000', '.000000'];
const TS_SHAPES = TS_FRACS.flatMap((frac) =>
  ['', 'Z'].map((z) => `0000-00-00T00:00:00${frac}${z}`),
);
const TS_OFFSET_SHAPES = TS_FRACS.flatMap((frac) =>
  ['+', '-'].map((sign) => `0000-00-00T00:00:00${frac}${sign}00:00`),
);
/**
 * The timestamp layouts of the fast mode (0 a digit, + either sign): those of the careful shape
 * test, each of its own length, so that the length picks the layout.
 */
const TS_LAYOUTS = [...TS_SHAPES, ...TS_FRACS.map((frac) => `0000-00-00T00:00:00${frac}+00:00`)];
if (new Set(TS_LAYOUTS.map((l) => l.length)).size !== TS_LAYOUTS.length)
  throw new Error('two timestamp layouts of one length');
/** The largest jsonb string whose bits are taken (its text is then at most ~52 bytes). */
const MAX_BITS_JSONB = 64;
const MONTHS_31 = ['01', '03', '05', '07', '08', '10', '12'];
/**
 * The bytes of the hex digits 0-9, a-f and A-F (decode is immutable: folded once per plan; no
 * backslash, whatever standard_conforming_strings says).
 */
const HEX_BYTES = `decode('${Buffer.from('0123456789abcdefABCDEF').toString('hex')}', 'hex')`;
/** What `trim: true` strips: ASCII whitespace (btrim alone strips only spaces). */
const WHITESPACE = `E' \\t\\n\\x0b\\f\\r'`;

/**
 * `when <test> then <result>`, the result being `parts` joined by `||`; a long arm puts `then`
 * on a line of its own, and a long result continues on further lines.
 */
function arm(test: string, ...parts: string[]): string {
  const result = parts.join(' || ');
  if (test.length + result.length <= 70) return `when ${test} then ${result}`;
  return `when ${test}\n  then ${wrap(parts, 76, ' || ').join('\n    || ')}`;
}

/** The text of a JSON string (or number, for text fields that accept numbers); else null. */
function textOf(f: FieldModel): string {
  const types = f.type === 'text' && f.acceptNumbers ? `in ('string', 'number')` : `= 'string'`;
  return `case when jsonb_typeof(${j(f)}) ${types} then ${j(f)} #>> '{}' end`;
}

/** A plain-cast-safe ISO-8601 timestamp: every digit in place and every field in range. */
function timestampShape(x: string): string {
  const sub = (from: number, len = 2) => `substr(${x}, ${from}, ${len})`;
  const shape = `translate(${x}, '0123456789', '0000000000')`;
  const list = (items: string[], by: number) => {
    const pad = `\n${' '.repeat(by)}`;
    return `${pad}${wrap(items.map(literal), 66).join(`,${pad}`)}`;
  };
  return `(${shape} in (${list(TS_SHAPES, 10)})
        or (${shape} in (${list(TS_OFFSET_SHAPES, 14)})
            and substr(${x}, length(${x}) - 4, 2) < '16' and right(${x}, 2) < '60'))
       and left(${x}, 4) > '0000' and ${sub(6)} between '01' and '12'
       and (${sub(9)} between '01' and '28'
            or (${sub(9)} in ('29', '30') and ${sub(6)} <> '02')
            or (${sub(9)} = '31'
                and ${sub(6)} in (${MONTHS_31.map(literal).join(', ')})))
       and ${sub(12)} < '24' and ${sub(15)} < '60'
       and ${sub(18)} < '60'`;
}

/** A bit-string constant, one byte per character of `layout`. */
const bits = (layout: string, byte: (c: string) => string) =>
  `x'${[...layout].map(byte).join('')}'`;
const hex = (c: string) => c.charCodeAt(0).toString(16).padStart(2, '0');

/**
 * The fast mode's timestamp layout test, over the bits of the text (fN_bits: its bytes as a bit
 * string). By bytes of the layout: a separator must be itself (a sign either sign), a digit
 * 0x30-0x39: its high nibble 3, and its low nibble at most 9 (not bit 8 together with bit 4 or
 * bit 2). Digits in place are all the plain cast needs to read the text as the careful mode
 * would (the ISO-8601 pattern of spectrum.try_timestamptz); a field out of range still raises.
 */
function timestampLayout(f: FieldModel): string {
  const x = b(f);
  const arms = TS_LAYOUTS.map((layout) => {
    const mask = bits(layout, (c) => (c === '0' ? 'f0' : 'ff'));
    const want = (sign: string) =>
      bits(layout, (c) => (c === '0' ? '30' : hex(c === '+' ? sign : c)));
    const wants = layout.includes('+') ? `in (${want('+')},\n${want('-')})` : `= ${want('+')}`;
    const low = bits(layout, (c) => (c === '0' ? '08' : '00'));
    return `when ${layout.length}
  then (${x} & ${mask})
       ${wants.replace(/\n/g, '\n          ')}
   and bit_count(${x} & ((${x} << 1) | (${x} << 2))
                 & ${low}) = 0`;
  });
  return `case octet_length(${s(f)})\n${indent(arms.join('\n'))}\nend`;
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
      // uuid_in takes 32 hex digits, a hyphen after any group of four, and braces: 32 to 41
      // characters.
      // The fast mode casts any text of that layout: a non-hex digit raises.
      return `case ${dflt}when not ${CAREFUL} and octet_length(${s(f)}) = 36
       and ${s(f)} like '________-____-____-____-____________'
    then ${s(f)}::uuid
  when octet_length(${s(f)}) = 36
       and ${s(f)} like '________-____-____-____-____________'
       and octet_length(replace(${s(f)}, '-', '')) = 32
       and btrim(textsend(replace(${s(f)}, '-', '')),
                 ${HEX_BYTES}) = ''::bytea
    then ${s(f)}::uuid
  when length(${s(f)}) between 32 and 41 then spectrum.try_uuid(${s(f)}) end`;
    }
    case 'timestamptz': {
      const dflt = f.default === 'received_at' ? `when ${x} is null then received_at\n  ` : '';
      return `case ${dflt}when not ${CAREFUL} and ${indent(timestampLayout(f), 6).trimStart()}
    then ${s(f)}::timestamptz
  when ${timestampShape(s(f))}
    then ${s(f)}::timestamptz
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
      const dflt = f.default === 'empty_object' ? `when ${x} is null then '{}'::jsonb\n  ` : '';
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

/** The parts of `label: <value> <problem>`, the value shown as a short JSON excerpt. */
const bad = (f: FieldModel, problem: string) => [
  literal(`${f.label}: `),
  `spectrum.json_excerpt(${j(f)})`,
  literal(` ${problem}`),
];

function fieldError(f: FieldModel, m: Model): string {
  const x = j(f);
  const val = v(f);
  const max = m.spec.limits.maxTextLength;
  const arms: string[] = [
    arm(`${x} is null`, f.required ? literal(`${f.label}: missing`) : 'null'),
  ];
  if (f.type === 'text') {
    const types = f.acceptNumbers ? `('string', 'number')` : `('string')`;
    const kind = f.acceptNumbers ? 'a string or number' : 'a string';
    arms.push(arm(`jsonb_typeof(${x}) not in ${types}`, ...bad(f, `is not ${kind}`)));
    // The value is null only when trimming left nothing: the text of a string or number
    // never is, and any other JSON type is caught just above.
    if (f.required && f.trim)
      arms.push(arm(`${val} is null`, literal(`${f.label}: must not be empty`)));
    if (!f.trim) {
      const empty = `${f.label}: must not be empty${f.required ? '' : ' (leave it out instead)'}`;
      arms.push(arm(`${val} = ''`, literal(empty)));
    }
    arms.push(
      arm(
        `length(${val}) > ${max}`,
        literal(`${f.label}: text of `),
        `length(${val})`,
        literal(` characters exceeds limits.maxTextLength (${max})`),
      ),
    );
  } else {
    arms.push(arm(`${val} is null`, ...bad(f, `is not ${KIND[f.type]}`)));
  }
  if (f.type === 'timestamptz') {
    const { before, after } = m.spec.window;
    const window = `(${before} before to ${after} after received_at)`;
    arms.push(
      arm(
        `${val} < received_at - interval ${literal(before)}\n     ` +
          `or ${val} > received_at + interval ${literal(after)}`,
        ...bad(f, `is outside the accepted window ${window}`),
      ),
    );
  }
  return `case\n${indent(arms.join('\n'))}\nend`;
}

/**
 * Whether a row certainly has no error: every field present where required, of its type, within
 * its limits. Each test is a cheap necessary condition of its field's error being null (a text's
 * octet_length bounds its length in characters), so a row that passes needs no error_msg; a
 * row that fails it, or where a test is null (an empty trimmed text), is built its error_msg in
 * full, which may still be null.
 */
function rowIsValid(m: Model, parentCol: (p: string[]) => string): string {
  const max = m.spec.limits.maxTextLength;
  const { before, after } = m.spec.window;
  const optional = (f: FieldModel, test: string) =>
    f.required ? test : `(${j(f)} is null or ${test})`;
  const tests = [
    "payload_type = 'object'",
    `payload_bytes <= ${m.spec.limits.maxPayloadBytes}`,
    ...m.parents.map(
      (p) => `(${parentCol(p)} is null or jsonb_typeof(${parentCol(p)}) in ('object', 'null'))`,
    ),
    ...m.fields.map((f) => {
      const val = v(f);
      if (f.type === 'text') {
        // Untrimmed, the text is the value (null unless of an accepted JSON type); trimmed, the
        // value is null only when trimming left nothing.
        const length = `octet_length(${val}) <= ${max}`;
        return optional(f, f.trim ? length : `(${val} <> '' and ${length})`);
      }
      if (f.type === 'timestamptz')
        return optional(
          f,
          `(${val} >= received_at - interval ${literal(before)}\n` +
            `     and ${val} <= received_at + interval ${literal(after)})`,
        );
      return optional(f, `${val} is not null`);
    }),
  ];
  return tests.join('\nand ');
}

const comment = (text: string) => `-- ${text.split('\n').join('\n-- ')}`;

/** One fenced level: `offset 0` keeps the planner from pulling it up into the level above. */
const level = (cols: string[], from: string, alias: string, fence: string) => `select
${indent(cols.join(',\n'))}
from (
${indent(from)}
) ${alias}
${comment(fence)}
offset 0`;

/**
 * What the positional names of extractSelect hold and what each level computes, as `--`
 * lines for the top of a file that embeds it (paths pass through commentText: a key may hold
 * a line break).
 */
export function extractLegend(m: Model, of = 'the extraction SELECT'): string {
  const rows = [
    ...m.fields.map((f) => [`f${f.position}`, f.name, f.sqlType, jsonPath('payload', f.path)]),
    ...m.parents.map((p, i) => [`parent${i}`, '', 'jsonb', jsonPath('payload', p)]),
  ];
  const width = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  const table = rows.map(
    (r) => `--   ${r.map((cell, c) => (c < 3 ? cell.padEnd(width[c]!) : cell)).join('  ')}`,
  );
  const lines = [
    `-- Legend of ${of}.`,
    '-- Columns are named by spec position, so that no field name can collide with them: fN_json',
    "-- is the JSON value at field N's path (null when absent or JSON null), fN_text its text,",
    '-- fN_value its typed value; parentN an object on a path.',
    ...table.map(commentText),
    '-- Levels, innermost first, each fenced by offset 0 (the planner would otherwise pull it up',
    '-- and compute its columns again at every reference; each fence says why it matters there):',
    '--   l0  the payload, detoasted once',
    '--   l1  payload_type, payload_bytes, parentN and fN_json (null when the payload is too big)',
    '--   l2  fN_text of the text, uuid and timestamptz fields; fN_bits, the bytes of a short',
    '--       timestamp text as a bit string, for the fast layout test',
    '--   l3  fN_value, defaults applied; the outer SELECT adds error_msg (built only for a row',
    '--       that fails the cheap validity test) and geo_id (only for a row with a place)',
    `-- ${CAREFUL} picks the mode: false, a uuid or timestamp of the right layout goes straight to`,
    '-- its plain cast (which may raise: the statement then runs again with it true); true, full',
    '-- shape tests and exception-wrapped casts that never raise.',
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * A place's geo_id from its geography values (in spec order): the one definition, which
 * extract_event computes per row and process_claimed per distinct place of a batch.
 */
export const geoIdOf = (values: string[], by = 0) =>
  `md5(jsonb_build_array(${wrap(values, 40).join(`,\n${' '.repeat(by + 22)}`)})::text)::uuid`;

/**
 * The extraction SELECT over `source`, a SELECT of raw_id, received_at and payload.
 * Output columns follow spectrum.extracted_event: raw_id, received_at, error_msg, geo_id, fields.
 * The payload size is that of the uncompressed jsonb, so extract_event (given the value) and
 * the pipeline (reading it from a possibly compressed row) measure the same number.
 */
export function extractSelect(m: Model, source: string): string {
  const parentCol = (p: string[]) => `parent${m.parents.indexOf(p)}`;
  const max = m.spec.limits.maxPayloadBytes;
  const geo = m.dims.geography;
  const texts = m.fields.filter(hasText);
  const guarded = (expr: string) =>
    `case when pg_column_size(payload) <= ${max}\n  then ${expr} end`;
  const l0 = `select raw_id, received_at, payload #> '{}'::text[] as payload
  from (
${indent(source, 4)}
  ) source
${indent(comment(FENCES.l0), 1)}
 offset 0`;
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
  const l2 = [
    ...carried,
    ...texts.map((f) => `${textOf(f)} as ${s(f)}`),
    ...m.fields
      .filter((f) => f.type === 'timestamptz')
      .map(
        (f) =>
          `case when not ${CAREFUL} and jsonb_typeof(${j(f)}) = 'string'\n` +
          `       and pg_column_size(${j(f)}) <= ${MAX_BITS_JSONB}\n` +
          `  then ('x' || encode(textsend(${j(f)} #>> '{}'), 'hex'))::varbit end as ${b(f)}`,
      ),
  ];
  const l3 = [...carried, ...m.fields.map((f) => `${typedValue(f)} as ${v(f)}`)];
  const errors = [
    ...m.parents.map(
      (p) =>
        `case when jsonb_typeof(${parentCol(p)}) not in ('object', 'null')\n  then ` +
        `${literal(`${p.join('.')}: `)} || spectrum.json_excerpt(${parentCol(p)})` +
        ` || ' is not an object' end`,
    ),
    ...m.fields.map((f) => fieldError(f, m)),
  ];
  const errorMsg = `case
  when ${indent(rowIsValid(m, parentCol), 5).trimStart()}
    then null
  when payload_type is distinct from 'object' then 'payload: is not a JSON object'
  when payload_bytes > ${max}
    then 'payload: ' || payload_bytes || ' bytes exceeds limits.maxPayloadBytes (${max})'
  else nullif(concat_ws('; ',
${indent(errors.join(',\n'), 4)}
  ), '')
end`;
  const geoId = geo.length
    ? `case when coalesce(${geo.map(v).join(', ')}) is not null
  then ${geoIdOf(geo.map(v))} end`
    : 'null::uuid';
  const out = [
    'raw_id',
    'received_at',
    `${errorMsg} as error_msg`,
    `${geoId} as geo_id`,
    ...m.fields.map((f) => `${v(f)} as ${ident(f.name)}`),
  ];
  const nested = level(
    l3,
    level(l2, level(l1, l0, 'l0', FENCES.l1), 'l1', FENCES.l2),
    'l2',
    FENCES.l3,
  );
  return `select
${indent(out.join(',\n'))}
from (
${indent(nested)}
) l3`;
}

/**
 * `statement` (which embeds extractSelect) and then `after`, in the fast mode; again in the
 * careful mode when a plain cast of the fast mode raised. A data exception in the careful mode
 * is not a bad value (those never raise there): it propagates.
 */
export function extractAttempts(statement: string, after = ''): string {
  return `loop
  begin
${indent(statement, 4)};
${after ? `${indent(after, 4)}\n` : ''}    exit;
  exception when data_exception then
    -- A value of the right layout failed its plain cast: the careful mode reads every value
    -- through the full shape tests and the exception-wrapped casts.
    if ${CAREFUL} then
      raise;
    end if;
    ${CAREFUL} := true;
  end;
end loop;`;
}

export function emitExtractEvent(m: Model): string {
  const source = 'select p_raw_id as raw_id, p_received_at as received_at, p_payload as payload';
  return `${GENERATED(
    import.meta.url,
    'extract_event: how one payload is interpreted, for an operator in psql.\n' +
      'The extraction SELECT is the same generated text that spectrum.process_claimed runs.\n' +
      'Timestamps without an offset are UTC, as in the pipeline; the fixed search_path keeps\n' +
      "functions and operators early in a caller's search_path from changing the interpretation.",
  )}${extractLegend(m)}
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
  ${CAREFUL} boolean := false;
begin
${indent(extractAttempts(`${extractSelect(m, source)}\n  into v_row`))}
  return v_row;
end
$$;

${commentOn(
  'function spectrum.extract_event(jsonb, timestamptz, uuid)',
  'Shows how one payload is interpreted: the typed fields, or the error_msg process_pending ' +
    'would record. p_received_at (default now()) anchors the accepted time window; p_raw_id ' +
    'stands in for the raw row id.',
)}

revoke all on function spectrum.extract_event(jsonb, timestamptz, uuid) from public;
grant execute on function spectrum.extract_event(jsonb, timestamptz, uuid) to spectrum_operator;
`;
}

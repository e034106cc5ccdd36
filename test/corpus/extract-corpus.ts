/*
 * The extraction corpus: valid, odd and malformed payloads with the outcome each must have,
 * through spectrum.extract_event and through the pipeline alike. A payload is given as JSON
 * text when its exact spelling matters (duplicate keys, number forms, escapes), else as a
 * value. Every event_id is distinct, so no case supersedes another in the pipeline.
 */

/** received_at of every corpus row: the accepted window is [2021-06-15 12:00, 2026-06-16 12:00]. */
export const RECEIVED_AT = '2026-06-15T12:00:00Z';
export const ACCOUNT = '5b0e8f2a-3c1d-4e6f-9a7b-8c9d0e1f2a3b';
/** Stands for the raw row id in expected values (event_id defaults to it). */
export const RAW_ID = Symbol('raw id');

export interface Typed {
  event_id: string | typeof RAW_ID;
  event_type: string;
  account_id: string;
  user_id: string | null;
  /** UTC, microseconds: 2026-06-15T12:00:00.000000Z. */
  occurred_at: string;
  country: string | null;
  region: string | null;
  city: string | null;
  properties: unknown;
}

export interface ExtractCase {
  name: string;
  /** The payload as JSON text. */
  json: string;
  /** Typed values of a valid event, or the exact error_msg of an invalid one. */
  expect: { values: Typed } | { error: string };
}

/** The JSON text of a value as PostgreSQL prints it in error_msg, cut to 80 characters. */
export function excerpt(jsonText: string): string {
  const chars = Array.from(jsonText);
  return chars.length > 80 ? `${chars.slice(0, 77).join('')}...` : jsonText;
}

/** `2026-06-15T10:00:00Z` → `2026-06-15T10:00:00.000000Z` */
export function micros(iso: string): string {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?Z$/.exec(iso);
  if (!m) throw new Error(`not a UTC ISO timestamp: ${iso}`);
  return `${m[1]}.${(m[2] ?? '').padEnd(6, '0')}Z`;
}

const BASE = { event_type: 'page_view', account_id: ACCOUNT };
const DEFAULTS: Typed = {
  event_id: RAW_ID,
  event_type: 'page_view',
  account_id: ACCOUNT,
  user_id: null,
  occurred_at: micros(RECEIVED_AT),
  country: null,
  region: null,
  city: null,
  properties: {},
};

const text = (payload: unknown) =>
  typeof payload === 'string' ? payload : JSON.stringify(payload);

function valid(name: string, payload: unknown, values: Partial<Typed> = {}): ExtractCase {
  const typed = { ...DEFAULTS, ...values };
  return {
    name,
    json: text(payload),
    expect: { values: { ...typed, occurred_at: micros(typed.occurred_at) } },
  };
}

function invalid(name: string, payload: unknown, error: string): ExtractCase {
  return { name, json: text(payload), expect: { error } };
}

/** A payload that differs from the minimal valid one in `changes`. */
const base = (changes: Record<string, unknown>) => ({ ...BASE, ...changes });
/** The expected message for a value `v` of field `label`: `label: <excerpt> <problem>`. */
const msg = (label: string, v: unknown, problem: string) =>
  `${label}: ${excerpt(JSON.stringify(v))} ${problem}`;
const notUuid = (label: string, v: unknown) => msg(label, v, 'is not a uuid');
const notTs = (v: unknown) => msg('timestamp', v, 'is not an ISO-8601 timestamp');
const outside = (v: string) =>
  msg('timestamp', v, 'is outside the accepted window (5 years before to 1 day after received_at)');
const tooLong = (label: string, n: number) =>
  `${label}: text of ${n} characters exceeds limits.maxTextLength (200)`;

const E = (n: number) => `e0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const OTHER = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
const GRIN = String.fromCodePoint(0x1f600);

export const corpus: ExtractCase[] = [
  // Valid.
  valid('minimal: event_type and account_id', BASE),
  valid(
    'full: every field',
    {
      event_id: E(1),
      event_type: 'signup',
      account_id: ACCOUNT,
      user_id: 'u-1',
      timestamp: '2026-06-15T10:30:00Z',
      geo: { country: 'FR', region: 'IDF', city: 'Paris' },
      properties: { plan: 'pro', n: 3, nested: { a: [1, 2] } },
    },
    {
      event_id: E(1),
      event_type: 'signup',
      user_id: 'u-1',
      occurred_at: '2026-06-15T10:30:00Z',
      country: 'FR',
      region: 'IDF',
      city: 'Paris',
      properties: { plan: 'pro', n: 3, nested: { a: [1, 2] } },
    },
  ),
  valid('user_id: an integer', base({ user_id: 42 }), { user_id: '42' }),
  valid('user_id: a negative integer', base({ user_id: -7 }), { user_id: '-7' }),
  valid('user_id: zero', base({ user_id: 0 }), { user_id: '0' }),
  valid(
    'user_id: a decimal keeps its digits',
    `{"event_type":"page_view","account_id":"${ACCOUNT}","user_id":1.50}`,
    { user_id: '1.50' },
  ),
  valid(
    'user_id: an exponent is expanded',
    `{"event_type":"page_view","account_id":"${ACCOUNT}","user_id":1e3}`,
    { user_id: '1000' },
  ),
  valid(
    'user_id: a 30-digit integer keeps every digit',
    `{"event_type":"page_view","account_id":"${ACCOUNT}","user_id":123456789012345678901234567890}`,
    { user_id: '123456789012345678901234567890' },
  ),
  valid('account_id: upper case', base({ account_id: ACCOUNT.toUpperCase() })),
  valid('account_id: in braces', base({ account_id: `{${ACCOUNT}}` })),
  valid('account_id: without hyphens', base({ account_id: ACCOUNT.replace(/-/g, '') })),
  valid(
    'account_id: a hyphen after every four digits',
    base({ account_id: ACCOUNT.replace(/-/g, '').replace(/(.{4})(?!$)/g, '$1-') }),
  ),
  valid('event_id: upper case', base({ event_id: E(2).toUpperCase() }), { event_id: E(2) }),
  valid('event_id: in braces without hyphens', base({ event_id: `{${E(3).replace(/-/g, '')}}` }), {
    event_id: E(3),
  }),
  valid('timestamp: Z', base({ timestamp: '2026-06-14T08:00:00Z' }), {
    occurred_at: '2026-06-14T08:00:00Z',
  }),
  valid('timestamp: milliseconds', base({ timestamp: '2026-06-14T08:00:00.123Z' }), {
    occurred_at: '2026-06-14T08:00:00.123Z',
  }),
  valid('timestamp: microseconds', base({ timestamp: '2026-06-14T08:00:00.123456Z' }), {
    occurred_at: '2026-06-14T08:00:00.123456Z',
  }),
  valid(
    'timestamp: nanoseconds round to microseconds',
    base({ timestamp: '2026-06-14T08:00:00.123456789Z' }),
    { occurred_at: '2026-06-14T08:00:00.123457Z' },
  ),
  valid('timestamp: positive offset', base({ timestamp: '2026-06-14T08:00:00+02:00' }), {
    occurred_at: '2026-06-14T06:00:00Z',
  }),
  valid(
    'timestamp: negative offset with minutes',
    base({ timestamp: '2026-06-14T08:00:00.5-05:30' }),
    { occurred_at: '2026-06-14T13:30:00.5Z' },
  ),
  valid('timestamp: offset without colon', base({ timestamp: '2026-06-14T08:00:00+0530' }), {
    occurred_at: '2026-06-14T02:30:00Z',
  }),
  valid('timestamp: offset in hours only', base({ timestamp: '2026-06-14T08:00:00-03' }), {
    occurred_at: '2026-06-14T11:00:00Z',
  }),
  valid('timestamp: a date alone is midnight UTC', base({ timestamp: '2026-06-14' }), {
    occurred_at: '2026-06-14T00:00:00Z',
  }),
  valid('timestamp: space separator', base({ timestamp: '2026-06-14 08:00:00Z' }), {
    occurred_at: '2026-06-14T08:00:00Z',
  }),
  valid('timestamp: no offset is UTC', base({ timestamp: '2026-06-14T08:00:00' }), {
    occurred_at: '2026-06-14T08:00:00Z',
  }),
  valid('timestamp: no seconds', base({ timestamp: '2026-06-14T08:00Z' }), {
    occurred_at: '2026-06-14T08:00:00Z',
  }),
  valid('timestamp: lower-case t and z', base({ timestamp: '2026-06-14t08:00:00z' }), {
    occurred_at: '2026-06-14T08:00:00Z',
  }),
  valid('timestamp: 29 February of a leap year', base({ timestamp: '2024-02-29T12:00:00Z' }), {
    occurred_at: '2024-02-29T12:00:00Z',
  }),
  valid('timestamp: the 31st of a long month', base({ timestamp: '2026-05-31T23:59:59Z' }), {
    occurred_at: '2026-05-31T23:59:59Z',
  }),
  valid('timestamp: the 30th of a short month', base({ timestamp: '2026-04-30T00:00:00+14:00' }), {
    occurred_at: '2026-04-29T10:00:00Z',
  }),
  valid('timestamp: 24:00 is the end of the day', base({ timestamp: '2026-06-13T24:00:00Z' }), {
    occurred_at: '2026-06-14T00:00:00Z',
  }),
  valid('window: exactly 5 years before received_at', base({ timestamp: '2021-06-15T12:00:00Z' }), {
    occurred_at: '2021-06-15T12:00:00Z',
  }),
  valid('window: exactly 1 day after received_at', base({ timestamp: '2026-06-16T12:00:00Z' }), {
    occurred_at: '2026-06-16T12:00:00Z',
  }),

  // Odd, but valid.
  valid(
    'unknown top-level keys are ignored',
    base({
      extra: 1,
      'weird key': [null, { x: true }],
      Event_Type: 'other',
      'event_type ': 'other',
    }),
  ),
  valid(
    'JSON null counts as absent everywhere',
    base({ event_id: null, user_id: null, timestamp: null, geo: null, properties: null }),
  ),
  valid('an empty geo', base({ geo: {} })),
  valid('geo: unknown keys are ignored', base({ geo: { continent: 'EU', country: 'DE' } }), {
    country: 'DE',
  }),
  valid(
    'geo: values are trimmed, blank is absent',
    base({ geo: { country: '  FR ', region: '   ', city: '\tLyon\n' } }),
    { country: 'FR', city: 'Lyon' },
  ),
  valid(
    'geo: null values are absent',
    base({ geo: { country: null, region: 'Bavaria', city: null } }),
    { region: 'Bavaria' },
  ),
  valid(
    'unicode in every text field',
    base({
      event_type: 'café ☕',
      user_id: 'ユーザー',
      geo: { country: '日本', region: 'Île-de-France', city: 'Zürich' },
      properties: { clé: 'värde' },
    }),
    {
      event_type: 'café ☕',
      user_id: 'ユーザー',
      country: '日本',
      region: 'Île-de-France',
      city: 'Zürich',
      properties: { clé: 'värde' },
    },
  ),
  valid('emoji in user_id and properties', base({ user_id: '🦄', properties: { mood: '😀👍🏽' } }), {
    user_id: '🦄',
    properties: { mood: '😀👍🏽' },
  }),
  valid('event_type of exactly 200 characters', base({ event_type: 'e'.repeat(200) }), {
    event_type: 'e'.repeat(200),
  }),
  valid(
    'geo.city of 200 four-byte characters (the limit counts characters)',
    base({ geo: { city: GRIN.repeat(200) } }),
    { city: GRIN.repeat(200) },
  ),
  valid('properties: an explicit empty object', base({ properties: {} })),
  valid(
    'properties: nested arrays and nulls are kept',
    base({ properties: { a: [1, null, [2, { b: null }]], c: null } }),
    { properties: { a: [1, null, [2, { b: null }]], c: null } },
  ),
  valid(
    'event_type: SQL text is only text',
    base({ event_type: "x'); drop table spectrum.raw_events; --" }),
    { event_type: "x'); drop table spectrum.raw_events; --" },
  ),
  valid(
    'duplicate keys: the last one wins',
    '{"event_type":"first","account_id":"not a uuid",' +
      `"event_type":"second","account_id":"${ACCOUNT}"}`,
    { event_type: 'second' },
  ),
  valid(
    'event_type: whitespace is kept as sent (only geo is trimmed)',
    base({ event_type: '  spaced  ' }),
    { event_type: '  spaced  ' },
  ),
  valid('user_id: whitespace is kept as sent', base({ user_id: ' u1 ' }), { user_id: ' u1 ' }),
  valid(
    'escaped control characters are kept',
    `{"event_type":"tab\\there\\u0001","account_id":"${ACCOUNT}","user_id":"line\\nbreak"}`,
    { event_type: 'tab\there\u0001', user_id: 'line\nbreak' },
  ),

  // Malformed.
  invalid('an empty object', {}, 'event_type: missing; account_id: missing'),
  invalid('event_type: missing', { account_id: ACCOUNT }, 'event_type: missing'),
  invalid('event_type: null', base({ event_type: null }), 'event_type: missing'),
  invalid('event_type: empty', base({ event_type: '' }), 'event_type: must not be empty'),
  invalid('event_type: a number', base({ event_type: 42 }), 'event_type: 42 is not a string'),
  invalid(
    'event_type: an object',
    base({ event_type: { a: 1 } }),
    'event_type: {"a": 1} is not a string',
  ),
  invalid(
    'event_type: an array',
    base({ event_type: ['click'] }),
    'event_type: ["click"] is not a string',
  ),
  invalid(
    'event_type: a boolean',
    base({ event_type: false }),
    'event_type: false is not a string',
  ),
  invalid(
    'event_type: 201 characters',
    base({ event_type: 'e'.repeat(201) }),
    tooLong('event_type', 201),
  ),
  invalid('account_id: missing', { event_type: 'x' }, 'account_id: missing'),
  invalid('account_id: not a uuid', base({ account_id: 'abc' }), 'account_id: "abc" is not a uuid'),
  invalid('account_id: a number', base({ account_id: 42 }), 'account_id: 42 is not a uuid'),
  invalid(
    'account_id: 36 hyphens',
    base({ account_id: '-'.repeat(36) }),
    notUuid('account_id', '-'.repeat(36)),
  ),
  invalid(
    'account_id: a hyphen out of place',
    base({ account_id: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a-1' }),
    notUuid('account_id', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a-1'),
  ),
  invalid(
    'account_id: a trailing space',
    base({ account_id: `${ACCOUNT} ` }),
    notUuid('account_id', `${ACCOUNT} `),
  ),
  invalid(
    'account_id: one digit short',
    base({ account_id: ACCOUNT.slice(0, -1) }),
    notUuid('account_id', ACCOUNT.slice(0, -1)),
  ),
  invalid(
    'account_id: a non-hex letter',
    base({ account_id: `${ACCOUNT.slice(0, -1)}g` }),
    notUuid('account_id', `${ACCOUNT.slice(0, -1)}g`),
  ),
  invalid(
    'account_id: an unclosed brace',
    base({ account_id: `{${ACCOUNT}` }),
    notUuid('account_id', `{${ACCOUNT}`),
  ),
  invalid(
    'account_id: a long string is cut to 80 characters',
    base({ account_id: 'x'.repeat(100) }),
    `account_id: "${'x'.repeat(76)}... is not a uuid`,
  ),
  invalid(
    'event_id: not a uuid',
    base({ event_id: 'not-a-uuid' }),
    'event_id: "not-a-uuid" is not a uuid',
  ),
  invalid('event_id: a number', base({ event_id: 7 }), 'event_id: 7 is not a uuid'),
  invalid('user_id: a boolean', base({ user_id: true }), 'user_id: true is not a string or number'),
  invalid(
    'user_id: an object',
    base({ user_id: { id: 1 } }),
    'user_id: {"id": 1} is not a string or number',
  ),
  invalid(
    'user_id: empty',
    base({ user_id: '' }),
    'user_id: must not be empty (leave it out instead)',
  ),
  invalid('user_id: 201 characters', base({ user_id: 'u'.repeat(201) }), tooLong('user_id', 201)),
  invalid(
    'user_id: a number of 201 digits',
    `{"event_type":"x","account_id":"${ACCOUNT}","user_id":${'9'.repeat(201)}}`,
    tooLong('user_id', 201),
  ),
  ...['yesterday', 'epoch', 'infinity', '-infinity', 'now', 'today', 'allballs'].map((word) =>
    invalid(`timestamp: '${word}' is not ISO-8601`, base({ timestamp: word }), notTs(word)),
  ),
  invalid('timestamp: 30 February', base({ timestamp: '2026-02-30' }), notTs('2026-02-30')),
  invalid(
    'timestamp: 29 February of a common year',
    base({ timestamp: '2026-02-29T10:00:00Z' }),
    notTs('2026-02-29T10:00:00Z'),
  ),
  invalid(
    'timestamp: 31 April',
    base({ timestamp: '2026-04-31T10:00:00Z' }),
    notTs('2026-04-31T10:00:00Z'),
  ),
  invalid('timestamp: month 13', base({ timestamp: '2026-13-01' }), notTs('2026-13-01')),
  invalid(
    'timestamp: hour 25',
    base({ timestamp: '2026-06-14T25:00:00Z' }),
    notTs('2026-06-14T25:00:00Z'),
  ),
  invalid(
    'timestamp: offset minutes 99',
    base({ timestamp: '2026-06-14T10:00:00+00:99' }),
    notTs('2026-06-14T10:00:00+00:99'),
  ),
  invalid(
    'timestamp: offset of 16 hours',
    base({ timestamp: '2026-06-14T10:00:00+16:00' }),
    notTs('2026-06-14T10:00:00+16:00'),
  ),
  invalid(
    'timestamp: year 0',
    base({ timestamp: '0000-06-14T10:00:00Z' }),
    notTs('0000-06-14T10:00:00Z'),
  ),
  invalid('timestamp: epoch seconds', base({ timestamp: 1781000000 }), notTs(1781000000)),
  invalid('timestamp: day first', base({ timestamp: '14/06/2026' }), notTs('14/06/2026')),
  invalid(
    'timestamp: a zone name',
    base({ timestamp: '2026-06-14T10:00:00 PST' }),
    notTs('2026-06-14T10:00:00 PST'),
  ),
  invalid('timestamp: words', base({ timestamp: 'June 14 2026' }), notTs('June 14 2026')),
  invalid(
    'timestamp: ISO-8601 basic format is not accepted',
    base({ timestamp: '20260614T100000Z' }),
    notTs('20260614T100000Z'),
  ),
  invalid('timestamp: BC', base({ timestamp: '2026-06-14 BC' }), notTs('2026-06-14 BC')),
  invalid(
    'window: 1 µs before the window',
    base({ timestamp: '2021-06-15T11:59:59.999999Z' }),
    outside('2021-06-15T11:59:59.999999Z'),
  ),
  invalid(
    'window: 1 µs after the window',
    base({ timestamp: '2026-06-16T12:00:00.000001Z' }),
    outside('2026-06-16T12:00:00.000001Z'),
  ),
  invalid(
    'window: 1999',
    base({ timestamp: '1999-01-01T00:00:00Z' }),
    outside('1999-01-01T00:00:00Z'),
  ),
  invalid('window: 2100', base({ timestamp: '2100-01-01' }), outside('2100-01-01')),
  invalid('geo: a string', base({ geo: 'x' }), 'geo: "x" is not an object'),
  invalid(
    'geo: an array',
    base({ geo: [{ country: 'FR' }] }),
    'geo: [{"country": "FR"}] is not an object',
  ),
  invalid('geo: a number', base({ geo: 5 }), 'geo: 5 is not an object'),
  invalid(
    'geo.country: a number',
    base({ geo: { country: 33 } }),
    'geo.country: 33 is not a string',
  ),
  invalid(
    'geo.city: an object',
    base({ geo: { city: { name: 'Paris' } } }),
    'geo.city: {"name": "Paris"} is not a string',
  ),
  invalid(
    'geo.region: 201 characters',
    base({ geo: { region: 'r'.repeat(201) } }),
    tooLong('geo.region', 201),
  ),
  invalid(
    'properties: a string',
    base({ properties: 'text' }),
    'properties: "text" is not an object',
  ),
  invalid(
    'properties: an array',
    base({ properties: [1, 2, 3] }),
    'properties: [1, 2, 3] is not an object',
  ),
  invalid('properties: a number', base({ properties: 1 }), 'properties: 1 is not an object'),
  invalid(
    'several problems at once, in spec order',
    {
      event_id: 'x',
      event_type: 5,
      account_id: 'y',
      user_id: false,
      timestamp: 'soon',
      geo: { country: 1, region: [], city: 'c'.repeat(300) },
      properties: [],
    },
    [
      'event_id: "x" is not a uuid',
      'event_type: 5 is not a string',
      'account_id: "y" is not a uuid',
      'user_id: false is not a string or number',
      'timestamp: "soon" is not an ISO-8601 timestamp',
      'geo.country: 1 is not a string',
      'geo.region: [] is not a string',
      tooLong('geo.city', 300),
      'properties: [] is not an object',
    ].join('; '),
  ),
  invalid(
    'a parent that is not an object comes first',
    { geo: 'nowhere', account_id: 'nope' },
    'geo: "nowhere" is not an object; event_type: missing; account_id: "nope" is not a uuid',
  ),
  invalid(
    'event_id: one digit too many',
    base({ event_id: `${OTHER}0` }),
    notUuid('event_id', `${OTHER}0`),
  ),
];

/**
 * Payloads the database refuses at insert (raw_events_payload_is_object), shown by
 * extract_event alone.
 */
export const notObjects: { name: string; json: string | null }[] = [
  { name: 'an array', json: '[1, 2]' },
  { name: 'a string', json: '"event"' },
  { name: 'a number', json: '42' },
  { name: 'JSON null', json: 'null' },
  { name: 'SQL NULL', json: null },
];

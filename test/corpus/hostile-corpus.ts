/*
 * Hostile payloads, generated here (nothing big is committed): SQL injection in every value
 * and key, payloads over and just under the size limit, deep nesting, many keys, long texts,
 * unicode and control characters, wrong JSON types, nulls and duplicate keys. Each says how
 * it must end: `done` (optionally with the text values the fact and dimensions must hold), or
 * failed with an exact error_msg, or failed with a size message checked against the server.
 */
import { randomBytes } from 'node:crypto';
import { ACCOUNT, excerpt } from './extract-corpus.ts';

export interface HostileCase {
  name: string;
  json: string;
  expect:
    | {
        done: true;
        values?: {
          event_type?: string;
          user_id?: string | null;
          country?: string | null;
          region?: string | null;
          city?: string | null;
        };
      }
    | { error: string }
    | { tooBig: true };
}

/** A file the injection strings would create if any reached SQL (COPY … TO PROGRAM) unquoted. */
export const CANARY = `/tmp/spectrum-canary-${randomBytes(6).toString('hex')}`;

export const INJECTIONS = [
  `'); drop table spectrum.raw_events; --`,
  `'; delete from spectrum.fact_events; --`,
  `$$; drop schema spectrum cascade; $$`,
  `$fn$ select 1; $fn$ $_$ $a$`,
  `%I %L %s %% %1$s`,
  `\\'; select pg_sleep(30); --`,
  `\\\\ \\x27 \\u0027 E'\\047' \\`,
  `" or 1=1 --`,
  `); truncate spectrum.dim_accounts cascade; (`,
  `'||(select current_user)||'`,
  `'; copy (select 1) to program 'touch ${CANARY}'; --`,
  `:"name" :'name' \\gexec \\! touch ${CANARY}`,
  `*/ drop table spectrum.raw_events; /*`,
];

const BASE = { event_type: 'hostile', account_id: ACCOUNT };
const json = (v: unknown) => JSON.stringify(v);
const cut = (v: unknown) => excerpt(json(v));
const tooLong = (label: string, n: number) =>
  `${label}: text of ${n} characters exceeds limits.maxTextLength (200)`;
const nested = (depth: number, open: string, leaf: string, close: string) =>
  open.repeat(depth) + leaf + close.repeat(depth);
const keys = (n: number, value: (i: number) => string) =>
  `{${Array.from({ length: n }, (_, i) => `"k${i}":${value(i)}`).join(',')}}`;

const UNICODE = [
  '👩‍👩‍👧‍👦', // a family: four emoji joined by zero-width joiners
  'e\u0301', // e and a combining acute accent
  'مرحبا', // right to left
  '\u202eRTL override\u202c',
  '\u200b\ufeff', // zero-width space, byte order mark
  '𝕏𝔂𝔃', // astral plane letters
  '\u2028\u2029', // line and paragraph separators
  '中文 日本語 한국어',
].join(' ');
/** 200 copies of one four-byte character: the longest a dimension text may be, in bytes. */
const wide = (codePoint: number) => String.fromCodePoint(codePoint).repeat(200);
const CONTROL =
  Array.from({ length: 31 }, (_, i) => String.fromCharCode(i + 1)).join('') + '\u007f';

const everywhere = (s: string) =>
  json({
    [s]: s,
    event_type: s,
    account_id: ACCOUNT,
    user_id: s,
    geo: { country: s, region: s, city: s, [s]: s },
    properties: { [s]: s, nested: { [s]: [s, { [s]: s }] } },
  });

export function hostileCases(): HostileCase[] {
  const big = (n: number, blob: string) =>
    json({ ...BASE, properties: { blob: blob.slice(0, n) } });
  const hex = (chars: number) =>
    randomBytes(Math.ceil(chars / 2))
      .toString('hex')
      .slice(0, chars);
  return [
    ...INJECTIONS.map((s, i) => ({
      name: `injection ${i + 1} in every string value and key is only text`,
      json: everywhere(s),
      expect: {
        done: true as const,
        values: { event_type: s, user_id: s, country: s, region: s, city: s },
      },
    })),
    ...INJECTIONS.map((s, i) => ({
      name: `injection ${i + 1} in the typed fields fails naming each`,
      json: json({ event_id: s, event_type: 'x', account_id: s, timestamp: s }),
      expect: {
        error: [
          `event_id: ${cut(s)} is not a uuid`,
          `account_id: ${cut(s)} is not a uuid`,
          `timestamp: ${cut(s)} is not an ISO-8601 timestamp`,
        ].join('; '),
      },
    })),
    {
      name: 'a 4 MB random property blob is over the size limit',
      json: big(4_000_000, hex(4_000_000)),
      expect: { tooBig: true },
    },
    {
      name: 'a 4 MB blob that compresses well is over the limit all the same',
      json: big(4_000_000, 'x'.repeat(4_000_000)),
      expect: { tooBig: true },
    },
    {
      name: '40 MB that compress to under 1 MB at rest are over the limit',
      json: big(40_000_000, 'ab'.repeat(20_000_000)),
      expect: { tooBig: true },
    },
    {
      name: 'a 1,040,000-byte payload just under the limit is processed',
      json: big(1_040_000, hex(1_040_000)),
      expect: { done: true },
    },
    {
      name: 'properties nested 2,000 deep',
      json:
        `{"event_type":"deep","account_id":"${ACCOUNT}",` +
        `"properties":${nested(2000, '{"a":', '1', '}')}}`,
      expect: { done: true },
    },
    {
      name: 'arrays nested 10,000 deep in properties',
      json:
        `{"event_type":"deep","account_id":"${ACCOUNT}",` +
        `"properties":{"a":${nested(10_000, '[', '', ']')}}}`,
      expect: { done: true },
    },
    {
      name: 'event_type nested 2,000 deep fails with a short excerpt',
      json: `{"event_type":${nested(2000, '[', '', ']')},"account_id":"${ACCOUNT}"}`,
      expect: { error: `event_type: ${excerpt(nested(2000, '[', '', ']'))} is not a string` },
    },
    {
      name: 'geo nested 2,000 deep fails with a short excerpt',
      json:
        `{"event_type":"x","account_id":"${ACCOUNT}",` +
        `"geo":{"country":${nested(2000, '{"a":', 'null', '}')}}}`,
      expect: {
        error: `geo.country: ${excerpt(nested(2000, '{"a": ', 'null', '}'))} is not a string`,
      },
    },
    {
      name: '20,000 keys in properties',
      json:
        `{"event_type":"many","account_id":"${ACCOUNT}",` +
        `"properties":${keys(20_000, (i) => String(i))}}`,
      expect: { done: true },
    },
    {
      name: '20,000 unknown top-level keys',
      json: keys(20_000, (i) => json(`v${i}`)).replace(
        /^\{/,
        `{"event_type":"many","account_id":"${ACCOUNT}",`,
      ),
      expect: { done: true },
    },
    {
      name: 'a 100 kB key and an empty key in properties',
      json: json({ ...BASE, properties: { ['k'.repeat(100_000)]: 1, '': 2 } }),
      expect: { done: true },
    },
    ...(['event_type', 'user_id'] as const).map((f) => ({
      name: `a 100 kB ${f} fails naming the limit`,
      json: json({ ...BASE, [f]: 'x'.repeat(100_000) }),
      expect: { error: tooLong(f, 100_000) },
    })),
    ...(['country', 'region', 'city'] as const).map((f) => ({
      name: `a 100 kB geo.${f} fails naming the limit`,
      json: json({ ...BASE, geo: { [f]: 'x'.repeat(100_000) } }),
      expect: { error: tooLong(`geo.${f}`, 100_000) },
    })),
    {
      name: '100 kB in every dimension field at once',
      json: json({
        event_type: 'e'.repeat(100_000),
        account_id: ACCOUNT,
        user_id: 'u'.repeat(100_000),
        geo: {
          country: 'c'.repeat(100_000),
          region: 'r'.repeat(100_000),
          city: 'y'.repeat(100_000),
        },
      }),
      expect: {
        error: ['event_type', 'user_id', 'geo.country', 'geo.region', 'geo.city']
          .map((l) => tooLong(l, 100_000))
          .join('; '),
      },
    },
    {
      name: 'user_id 1e100000: 34 bytes that expand to 100,001 digits',
      json: `{"event_type":"x","account_id":"${ACCOUNT}","user_id":1e100000}`,
      expect: { error: tooLong('user_id', 100_001) },
    },
    {
      name: 'an event_type of huge numbers fails without writing them out',
      json:
        `{"event_type":[${Array(20_000).fill('1e131071').join(',')}],` +
        `"account_id":"${ACCOUNT}"}`,
      expect: { error: `event_type: ${excerpt(`[1${'0'.repeat(131_071)}, 1`)} is not a string` },
    },
    {
      name: 'huge numbers in properties are kept',
      json: `{"event_type":"x","account_id":"${ACCOUNT}","properties":{"n":[1e131071,-1e-16383]}}`,
      expect: { done: true },
    },
    {
      name: 'unicode and emoji in every string value and key',
      json: everywhere(UNICODE),
      expect: { done: true, values: { event_type: UNICODE, user_id: UNICODE, country: UNICODE } },
    },
    {
      name: '200 four-byte characters in each geo field (the widest dim_geography key)',
      json: json({
        ...BASE,
        geo: { country: wide(0x1f600), region: wide(0x1f984), city: wide(0x1f3f3) },
      }),
      expect: {
        done: true,
        values: { country: wide(0x1f600), region: wide(0x1f984), city: wide(0x1f3f3) },
      },
    },
    {
      name: 'escaped control characters in every string value and key',
      json: everywhere(`a${CONTROL}b`),
      expect: { done: true, values: { event_type: `a${CONTROL}b`, user_id: `a${CONTROL}b` } },
    },
    {
      name: 'numbers where strings are expected',
      json:
        '{"event_type":1,"account_id":2,"event_id":3,"user_id":4,"timestamp":1.5,' +
        '"geo":{"country":1,"region":2.5,"city":-0}}',
      expect: {
        error: [
          'event_id: 3 is not a uuid',
          'event_type: 1 is not a string',
          'account_id: 2 is not a uuid',
          'timestamp: 1.5 is not an ISO-8601 timestamp',
          'geo.country: 1 is not a string',
          'geo.region: 2.5 is not a string',
          'geo.city: 0 is not a string',
        ].join('; '),
      },
    },
    {
      name: 'strings where objects are expected',
      json: json({ ...BASE, geo: '{"country":"FR"}', properties: '{}' }),
      expect: {
        error:
          'geo: "{\\"country\\":\\"FR\\"}" is not an object; properties: "{}" is not an object',
      },
    },
    {
      name: 'booleans and containers where scalars are expected',
      json: json({
        event_id: {},
        event_type: true,
        account_id: [ACCOUNT],
        user_id: [],
        timestamp: { at: 'now' },
      }),
      expect: {
        error: [
          'event_id: {} is not a uuid',
          'event_type: true is not a string',
          `account_id: ${cut([ACCOUNT])} is not a uuid`,
          'user_id: [] is not a string or number',
          'timestamp: {"at": "now"} is not an ISO-8601 timestamp',
        ].join('; '),
      },
    },
    {
      name: 'null everywhere',
      json: json({
        event_id: null,
        event_type: null,
        account_id: null,
        user_id: null,
        timestamp: null,
        geo: null,
        properties: null,
      }),
      expect: { error: 'event_type: missing; account_id: missing' },
    },
    {
      name: 'null inside geo and properties of a valid event',
      json: json({
        ...BASE,
        geo: { country: null, region: null, city: null },
        properties: { a: null, b: [null] },
      }),
      expect: { done: true, values: { country: null, region: null, city: null } },
    },
    {
      name: 'duplicate keys: the last event_type wins',
      json: `{"event_type":"first","account_id":"${ACCOUNT}","event_type":"last"}`,
      expect: { done: true, values: { event_type: 'last' } },
    },
    {
      name: 'duplicate keys: a bad account_id overridden by a good one',
      json: `{"account_id":"bad","event_type":"x","account_id":"${ACCOUNT}"}`,
      expect: { done: true },
    },
    {
      name: 'duplicate keys: a good geo overridden by a bad one',
      json: `{"event_type":"x","account_id":"${ACCOUNT}","geo":{"country":"FR"},"geo":"x"}`,
      expect: { error: 'geo: "x" is not an object' },
    },
    {
      name: '20,000 duplicates of one property key',
      json:
        `{"event_type":"x","account_id":"${ACCOUNT}",` +
        `"properties":{${Array.from({ length: 20_000 }, (_, i) => `"k":${i}`).join(',')}}}`,
      expect: { done: true },
    },
    {
      name: 'a key that only looks like event_type',
      json: json({ 'event_type ': 'x', EVENT_TYPE: 'x', account_id: ACCOUNT }),
      expect: { error: 'event_type: missing' },
    },
  ];
}

/** What PostgreSQL's jsonb refuses at insert, with the SQLSTATE the producer gets. */
export const refusedAtInsert: { name: string; json: string; code: string }[] = [
  {
    name: '\\u0000 in a value',
    json: `{"event_type":"a\\u0000b","account_id":"${ACCOUNT}"}`,
    code: '22P05',
  },
  {
    name: '\\u0000 in a key',
    json: `{"event_type":"x","account_id":"${ACCOUNT}","properties":{"\\u0000":1}}`,
    code: '22P05',
  },
  {
    name: 'a lone surrogate',
    json: `{"event_type":"\\ud800","account_id":"${ACCOUNT}"}`,
    code: '22P02',
  },
  {
    name: 'a number beyond numeric range',
    json: `{"event_type":"x","account_id":"${ACCOUNT}","user_id":1e1000000}`,
    code: '22003',
  },
  {
    name: 'nesting 100,000 deep',
    json:
      `{"event_type":"x","account_id":"${ACCOUNT}",` +
      `"properties":{"a":${nested(100_000, '[', '', ']')}}}`,
    code: '54001',
  },
  { name: 'not JSON at all', json: `{"event_type": 'x'}`, code: '22P02' },
  {
    name: 'NaN',
    json: `{"event_type":"x","account_id":"${ACCOUNT}","user_id":NaN}`,
    code: '22P02',
  },
];

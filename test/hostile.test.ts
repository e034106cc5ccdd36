/*
 * Hostile input (test/corpus/hostile-corpus.ts) in one batch, each hostile payload followed
 * by a valid neighbour: every row ends done or failed with a clear message, the run finishes,
 * the neighbours are done, and the tables are intact. Also what PostgreSQL's jsonb itself
 * refuses at insert, and json_excerpt against the JSON text it abbreviates.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import { ACCOUNT } from './corpus/extract-corpus.ts';
import {
  CANARY,
  hostileCases,
  INJECTIONS,
  refusedAtInsert,
  type HostileCase,
} from './corpus/hostile-corpus.ts';

const NEIGHBOUR_ACCOUNT = '0c0c0c0c-0c0c-4c0c-8c0c-0c0c0c0c0c0c';
const TABLES = [
  'raw_events',
  'pipeline_runs',
  'status_totals',
  'event_registry',
  'dim_accounts',
  'dim_users',
  'dim_geography',
  'fact_events',
];

let db: TestDb;
const cases: HostileCase[] = hostileCases();
/** Raw ids: of each hostile payload, and of the valid event inserted right after it. */
const ids: { hostile: string; neighbour: string }[] = [];

const insert = async (json: string) => {
  const [row] = await db.sql<
    { id: string }[]
  >`insert into spectrum.raw_events (payload) values (${json}::text::jsonb) returning id`;
  return row!.id;
};

beforeAll(async () => {
  db = await testDatabase('hostile');
  for (const [i, c] of cases.entries()) {
    const hostile = await insert(c.json);
    const neighbour = await insert(
      JSON.stringify({
        event_type: 'neighbour',
        account_id: NEIGHBOUR_ACCOUNT,
        user_id: `n${i}`,
        properties: { after: c.name },
      }),
    );
    ids.push({ hostile, neighbour });
  }
  await runPipeline(db.sql);
}, 300_000);
afterAll(async () => db?.drop());

describe('a batch of hostile payloads', () => {
  it('is one run that finished, with nothing retried and nothing left pending', async () => {
    const runs = await db.sql`select * from spectrum.pipeline_runs`;
    expect(runs).toHaveLength(1);
    expect(runs[0]!.finished_at).toBeInstanceOf(Date);
    expect(runs[0]).toMatchObject({
      batches: 1,
      claimed: String(2 * cases.length),
      retried: '0',
      stopped_because: 'no pending rows',
    });
    const statuses = await db.sql`
      select status, count(*)::int as n from spectrum.raw_events group by 1 order by 1`;
    const failed = cases.filter((c) => !('done' in c.expect)).length;
    expect(statuses).toEqual([
      { status: 'done', n: 2 * cases.length - failed },
      { status: 'failed', n: failed },
    ]);
  });

  it.each(cases.map((c, i) => [c.name, i] as const))('%s', async (_name, i) => {
    const c = cases[i]!;
    const { hostile, neighbour } = ids[i]!;
    const [raw] = await db.sql`
      select status, error_msg, attempts, pg_column_size(payload) as stored_bytes,
             pg_column_size(${c.json}::text::jsonb) as payload_bytes,
             length(payload #>> '{properties,blob}') as blob_chars
        from spectrum.raw_events where id = ${hostile}`;
    const facts = await db.sql`
      select f.event_type, f.user_id, g.country, g.region, g.city,
             f.properties = coalesce(nullif(r.payload -> 'properties', 'null'), '{}')
               as properties_kept
        from spectrum.fact_events f
        join spectrum.raw_events r on r.id = f.raw_event_id
        left join spectrum.dim_geography g on g.geo_id = f.geo_id
       where f.raw_event_id = ${hostile}`;
    expect(raw!.attempts).toBe(1);
    if ('done' in c.expect) {
      expect(raw).toMatchObject({ status: 'done', error_msg: null });
      expect(facts).toHaveLength(1);
      expect(facts[0]!.properties_kept).toBe(true);
      expect(facts[0]).toMatchObject(c.expect.values ?? {});
    } else if ('error' in c.expect) {
      expect(raw).toMatchObject({ status: 'failed', error_msg: c.expect.error });
      expect(facts).toHaveLength(0);
    } else {
      expect(raw!.payload_bytes).toBeGreaterThan(1_048_576);
      expect(raw).toMatchObject({
        status: 'failed',
        error_msg: `payload: ${raw!.payload_bytes} bytes exceeds limits.maxPayloadBytes (1048576)`,
      });
      expect(facts).toHaveLength(0);
      // Durability first: the payload is staged whole, and fails at processing only.
      expect(raw!.blob_chars).toBe(
        (JSON.parse(c.json) as { properties: { blob: string } }).properties.blob.length,
      );
    }
    const [next] = await db.sql`
      select r.status, r.error_msg, count(f.event_id)::int as facts
        from spectrum.raw_events r left join spectrum.fact_events f on f.raw_event_id = r.id
       where r.id = ${neighbour} group by 1, 2`;
    expect(next).toEqual({ status: 'done', error_msg: null, facts: 1 });
  });

  it('includes a payload over the limit by its uncompressed size only', async () => {
    const i = cases.findIndex((c) => c.name.startsWith('40 MB'));
    const [raw] = await db.sql`
      select status, pg_column_size(payload) as stored
        from spectrum.raw_events where id = ${ids[i]!.hostile}`;
    expect(raw!.stored).toBeLessThan(1_048_576);
    expect(raw!.status).toBe('failed');
  });

  it('agrees with extract_event on every row', async () => {
    const disagreements = await db.sql`
      select r.id from spectrum.raw_events r
       cross join lateral spectrum.extract_event(r.payload, r.received_at, r.id) e
       where r.error_msg is distinct from e.error_msg`;
    expect(disagreements).toEqual([]);
  });

  it('leaves every table in place and runs none of the injected SQL', async () => {
    for (const t of TABLES) {
      const [r] = await db.sql`select to_regclass(${`spectrum.${t}`}) is not null as present`;
      expect(r!.present, t).toBe(true);
    }
    const [counts] = await db.sql`
      select (select count(*)::int from spectrum.raw_events) as raw,
             (select count(*)::int from spectrum.fact_events) as facts,
             (select count(*)::int from spectrum.dim_accounts
               where account_id in (${ACCOUNT}, ${NEIGHBOUR_ACCOUNT})) as accounts`;
    const done = cases.filter((c) => 'done' in c.expect).length;
    expect(counts).toEqual({ raw: 2 * cases.length, facts: cases.length + done, accounts: 2 });
    const stored = await db.sql`
      select distinct event_type from spectrum.fact_events where event_type = any(${INJECTIONS})`;
    expect(stored.map((r) => r.event_type).sort()).toEqual([...INJECTIONS].sort());
    expect(existsSync(CANARY)).toBe(false);
  });
});

describe('what PostgreSQL refuses at insert', () => {
  it.each(refusedAtInsert.map((c) => [c.name, c.json, c.code] as const))(
    '%s: the insert fails and nothing is staged',
    async (_name, json, code) => {
      const [before] = await db.sql`select count(*)::int as n from spectrum.raw_events`;
      const err =
        await db.sql`insert into spectrum.raw_events (payload) values (${json}::text::jsonb)`.catch(
          (e) => e,
        );
      expect(err.code).toBe(code);
      const [after] = await db.sql`select count(*)::int as n from spectrum.raw_events`;
      expect(after!.n).toBe(before!.n);
    },
  );
});

describe('spectrum.json_excerpt', () => {
  const values = [
    '{"a": 1, "b": [1, 2, {"c": null}]}',
    '[]',
    '{}',
    '[[]]',
    '[{}, [], "x"]',
    '"abc"',
    '1.50',
    'true',
    'null',
    '-0.001',
    `{"${'k'.repeat(100)}": 1}`,
    `["${'é'.repeat(100)}"]`,
    '{"a\\"b\\\\c\\u0001": "\\n\\t"}',
    `{"x": "${'y'.repeat(70)}", "z": 1}`,
    `[${Array.from({ length: 45 }, (_, i) => i).join(', ')}]`,
    `${'['.repeat(300)}${']'.repeat(300)}`,
    `${'{"a": '.repeat(300)}1${'}'.repeat(300)}`,
    '{"bb": 1, "a": 2, "ccc": {"d": [true, false]}}',
    '[1e30, 1e-5]',
    '[1, [2, [3]], {"x": {}}]',
    `"${'😀'.repeat(90)}"`,
    `{"${'😀'.repeat(39)}": [1]}`,
  ];
  it('shows exactly the first 77 characters of the JSON text, or all of it up to 80', async () => {
    const rows = await db.sql`
      select v, spectrum.json_excerpt(v::jsonb) as excerpt,
             case when length(v::jsonb::text) > 80 then left(v::jsonb::text, 77) || '...'
                  else v::jsonb::text end as expected
        from unnest(${values}::text[]) v`;
    for (const r of rows) expect(r.excerpt, r.v).toBe(r.expected);
  });

  it('is null for SQL NULL', async () => {
    const [r] = await db.sql`select spectrum.json_excerpt(null) as e`;
    expect(r!.e).toBeNull();
  });
});

/*
 * The extraction corpus (test/corpus/extract-corpus.ts), through spectrum.extract_event and
 * through the pipeline: every payload must end as the corpus says (typed values or the exact
 * error_msg), and both paths must agree row for row. Both run in a session whose time zone
 * is not UTC, to show that a timestamp without an offset is read as UTC regardless.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../scripts/lib/db.ts';
import { testDatabase, type TestDb } from './helpers/db.ts';
import {
  ACCOUNT,
  corpus,
  notObjects,
  RAW_ID,
  RECEIVED_AT,
  type ExtractCase,
  type Typed,
} from './corpus/extract-corpus.ts';

let db: TestDb;
/** A session in New York time: nothing may depend on the caller's time zone. */
let ny: Sql;
/** The raw id of each corpus case, in corpus order. */
let ids: string[];

beforeAll(async () => {
  db = await testDatabase('extract');
  ny = connect(db.url, { max: 2, connection: { TimeZone: 'America/New_York' } });
  const rows = await ny<{ id: string }[]>`
    insert into spectrum.raw_events (payload, received_at)
    select j::jsonb, ${RECEIVED_AT}::timestamptz
      from unnest(${corpus.map((c) => c.json)}::text[]) with ordinality as c(j, n)
     order by n
    returning id`;
  ids = rows.map((r) => r.id);
  await ny`call spectrum.process_pending()`;
});
afterAll(async () => {
  await ny?.end();
  await db?.drop();
});

it('has a corpus of at least 60 distinct cases, valid and not', () => {
  expect(corpus.length).toBeGreaterThanOrEqual(60);
  expect(new Set(corpus.map((c) => c.name)).size).toBe(corpus.length);
  expect(corpus.filter((c) => 'values' in c.expect).length).toBeGreaterThan(20);
  expect(corpus.filter((c) => 'error' in c.expect).length).toBeGreaterThan(20);
});

const typedOf = (row: Record<string, unknown>): Typed => ({
  event_id: row.event_id as string,
  event_type: row.event_type as string,
  account_id: row.account_id as string,
  user_id: row.user_id as string | null,
  occurred_at: row.occurred_at as string,
  country: row.country as string | null,
  region: row.region as string | null,
  city: row.city as string | null,
  properties: row.properties,
});

const expectedOf = (c: ExtractCase, rawId: string): Typed | undefined =>
  'values' in c.expect
    ? {
        ...c.expect.values,
        event_id: c.expect.values.event_id === RAW_ID ? rawId : c.expect.values.event_id,
      }
    : undefined;

describe('spectrum.extract_event', () => {
  it.each(corpus.map((c, i) => [c.name, i] as const))('%s', async (_name, i) => {
    const c = corpus[i]!;
    const [row] = await ny`
      select error_msg, event_id::text, event_type, account_id::text, user_id,
             to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
               as occurred_at,
             country, region, city, properties, geo_id::text,
             md5(jsonb_build_array(country, region, city)::text)::uuid::text as expected_geo_id
        from spectrum.extract_event(${c.json}::text::jsonb, ${RECEIVED_AT}::timestamptz,
                                    ${ids[i]!}::uuid)`;
    if ('error' in c.expect) {
      expect(row!.error_msg).toBe(c.expect.error);
      return;
    }
    expect(row!.error_msg).toBeNull();
    expect(typedOf(row!)).toEqual(expectedOf(c, ids[i]!));
    const { country, region, city } = c.expect.values;
    expect(row!.geo_id).toBe((country ?? region ?? city) ? row!.expected_geo_id : null);
  });

  it.each(notObjects.map((c) => [c.name, c.json] as const))(
    'refuses %s as a payload, as the insert does',
    async (_name, json) => {
      const [row] = await ny`select * from spectrum.extract_event(${json}::text::jsonb)`;
      expect(row!.error_msg).toBe('payload: is not a JSON object');
      const err =
        await ny`insert into spectrum.raw_events (payload) values (${json}::text::jsonb)`.catch(
          (e) => e,
        );
      expect(err.code).toBe(json === null ? '23502' : '23514');
    },
  );

  it('does not change the caller’s time zone or search_path', async () => {
    await ny.begin(async (tx) => {
      await tx`set local search_path = public`;
      await tx`
        select * from spectrum.extract_event(
          '{"event_type":"x","account_id":"5b0e8f2a-3c1d-4e6f-9a7b-8c9d0e1f2a3b"}')`;
      const [s] =
        await tx`select current_setting('timezone') as tz, current_setting('search_path') as path`;
      expect(s).toEqual({ tz: 'America/New_York', path: 'public' });
    });
  });
});

describe('the pipeline', () => {
  it('ran once over the whole corpus and finished', async () => {
    const runs = await db.sql`select * from spectrum.pipeline_runs`;
    expect(runs).toHaveLength(1);
    const valid = corpus.filter((c) => 'values' in c.expect).length;
    expect(runs[0]).toMatchObject({
      claimed: String(corpus.length),
      done: String(valid),
      failed: String(corpus.length - valid),
      retried: '0',
    });
    expect(runs[0]!.finished_at).toBeInstanceOf(Date);
  });

  it.each(corpus.map((c, i) => [c.name, i] as const))('%s', async (_name, i) => {
    const c = corpus[i]!;
    const [raw] = await db.sql`
      select status, error_msg, processed_at, attempts
        from spectrum.raw_events
       where id = ${ids[i]!}`;
    const facts = await ny`
      select f.event_id::text, f.event_type, f.account_id::text, f.user_id,
             to_char(f.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
               as occurred_at,
             g.country, g.region, g.city, f.properties,
             f.received_at = ${RECEIVED_AT}::timestamptz as received_at_kept,
             exists (select from spectrum.dim_accounts a where a.account_id = f.account_id)
               as has_account,
             f.user_id is null
               or exists (select from spectrum.dim_users u
                           where (u.account_id, u.user_id) = (f.account_id, f.user_id))
               as has_user
        from spectrum.fact_events f
        left join spectrum.dim_geography g on g.geo_id = f.geo_id
       where f.raw_event_id = ${ids[i]!}`;
    expect(raw!.processed_at).toBeInstanceOf(Date);
    expect(raw!.attempts).toBe(1);
    if ('error' in c.expect) {
      expect(raw).toMatchObject({ status: 'failed', error_msg: c.expect.error });
      expect(facts).toHaveLength(0);
      return;
    }
    expect(raw).toMatchObject({ status: 'done', error_msg: null });
    expect(facts).toHaveLength(1);
    expect(typedOf(facts[0]!)).toEqual(expectedOf(c, ids[i]!));
    expect(facts[0]).toMatchObject({ received_at_kept: true, has_account: true, has_user: true });
  });

  it('agrees with extract_event on every row', async () => {
    const disagreements = await db.sql`
      select r.id, r.status, r.error_msg, e.error_msg as extracted_error
        from spectrum.raw_events r
       cross join lateral spectrum.extract_event(r.payload, r.received_at, r.id) e
        left join spectrum.fact_events f on f.raw_event_id = r.id
       where r.error_msg is distinct from e.error_msg
          or r.status <> case when e.error_msg is null then 'done' else 'failed' end
          or case when e.error_msg is null
                  then (f.event_id, f.event_type, f.account_id, f.user_id, f.occurred_at,
                        f.geo_id, f.properties)
                       is distinct from (e.event_id, e.event_type, e.account_id, e.user_id,
                                         e.occurred_at, e.geo_id, e.properties)
                  else f.event_id is not null end`;
    expect(disagreements).toEqual([]);
    const [n] = await db.sql`select count(*)::int as n from spectrum.raw_events`;
    expect(n!.n).toBe(corpus.length);
  });
});

describe('the uuid shape test', () => {
  // Strings on both sides of the fast path: each must be read exactly as uuid_in reads it
  // (spectrum.try_uuid, the exception-wrapped cast), through the fast path or the fallback.
  const candidates = [
    '0b7e6a52-3c1d-4f7e-9a7b-2f4c1e8d9a01',
    '0B7E6A52-3C1D-4F7E-9A7B-2F4C1E8D9A01',
    '0b7e6a523c1d4f7e9a7b2f4c1e8d9a01',
    '{0b7e6a52-3c1d-4f7e-9a7b-2f4c1e8d9a01}',
    '0b7e6a52-3c1d-4f7e-9a7b-2f4c1e8d-a01',
    '0b7e6a52-3c1d-4f7e-9a7b-2f4c1e8d9a0-',
    '0b7e6a52--c1d-4f7e-9a7b-2f4c1e8d9a01',
    '0b7e6a52-3c1d-4f7e-9a7b-2f4c1e8d9a0g',
    '0b7e6a52-3c1d-4f7e-9a7b-2f4c1e8d9a0 ',
    '0b7e6a52-3c1d-4f7e-9a7b-2f4c1e8d9a0é',
    '0b7e6a52-3c1d-4f7e-9a7b-2f4c1e8d9a0\u0661',
    'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz',
    '------------------------------------',
    '0b7e6a52-3c1d-4f7e-9a7b-2f4c1e8d9a012',
  ];

  it('accepts exactly what uuid_in accepts, with the same value', async () => {
    const rows = await db.sql`
      select c, spectrum.try_uuid(c)::text as truth, e.account_id::text as account_id, e.error_msg
        from unnest(${candidates}::text[]) c,
             lateral spectrum.extract_event(
               jsonb_build_object('event_type', 'x', 'account_id', c)) e`;
    expect(rows).toHaveLength(candidates.length);
    for (const r of rows) {
      expect(r.account_id, r.c).toBe(r.truth);
      if (r.truth === null) expect(r.error_msg, r.c).toMatch(/^account_id: ".*" is not a uuid$/);
      else expect(r.error_msg, r.c).toBeNull();
    }
    expect(rows.filter((r) => r.truth !== null).length).toBe(4);
  });
});

describe('the timestamp layout test', () => {
  // Strings on both sides of the fast mode's layout test: each must be read exactly as
  // spectrum.try_timestamptz reads it, through the plain cast or the careful mode.
  const candidates = [
    '2026-06-01T09:30:00.123Z',
    '2026-06-01T09:30:00Z',
    '2026-06-01T09:30:00',
    '2026-06-01T09:30:00.123456',
    '2026-06-01T09:30:00.123+02:00',
    '2026-06-01T09:30:00.123456-05:30',
    '2026-06-01T09:30:00/02:00',
    '2026-06-01T09:30:00.1234Z',
    '2026-06-01t09:30:00Z',
    '2026-06-01T09:30:0:.123Z',
    '2026-06-01T09:30:00.12;Z',
    '2026-06-01T09:30:00.12?Z',
    '2026-06-01T09:30:00.12 Z',
    ' 026-06-01T09:30:00.123Z',
    '2026-06-01T09:3O:00.123Z',
    '２026-06-01T09:30:00Z',
    '2026-02-30T00:00:00Z',
    '2024-02-29T00:00:00Z',
    '2026-06-01T24:00:00Z',
    '2026-06-01T23:59:60Z',
    '2026-06-01T09:30:00+16:00',
    '0000-06-01T09:30:00Z',
  ];

  it('accepts exactly what try_timestamptz accepts, with the same value', async () => {
    const rows = await db.sql`
      select c, spectrum.try_timestamptz(c) as truth, e.occurred_at, e.error_msg
        from unnest(${candidates}::text[]) c,
             lateral spectrum.extract_event(
               jsonb_build_object('event_type', 'x', 'account_id', ${ACCOUNT}::text,
                                  'timestamp', c),
               '2026-06-01 12:00:00+00') e`;
    expect(rows).toHaveLength(candidates.length);
    for (const r of rows) {
      if (r.truth === null) {
        expect(r.error_msg, r.c).toMatch(/^timestamp: ".*" is not an ISO-8601 timestamp$/);
        continue;
      }
      expect(r.occurred_at, r.c).toEqual(r.truth);
      if (r.error_msg !== null)
        expect(r.error_msg, r.c).toMatch(/^timestamp: ".*" is outside the accepted window/);
    }
    expect(rows.filter((r) => r.truth !== null).length).toBeGreaterThan(8);
    expect(rows.filter((r) => r.truth === null).length).toBeGreaterThan(8);
  });
});

describe('the fast and the careful mode', () => {
  // A batch runs the fast mode, where a uuid or timestamp of the right layout goes straight to
  // its plain cast; when such a cast raises (a non-hex digit, 30 February) the batch runs again
  // in the careful mode. Alone in a batch of one, each corpus payload runs the fast mode (unless
  // it holds such a value itself); all together with such a value they run the careful mode.
  // Both must record the same outcome for every payload.
  let modes: TestDb;
  const TRIGGER = JSON.stringify({
    event_type: 'x',
    account_id: 'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz',
  });
  /** Per corpus case, in corpus order: the status, error_msg and fact of each run. */
  let alone: unknown[];
  let together: unknown[];
  let triggerRow: unknown;

  const insertCorpus = async (extra: string[]) => {
    const rows = await modes.sql<{ id: string }[]>`
      insert into spectrum.raw_events (payload, received_at)
      select j::jsonb, ${RECEIVED_AT}::timestamptz
        from unnest(${[...corpus.map((c) => c.json), ...extra]}::text[]) with ordinality as c(j, n)
       order by n
      returning id`;
    return rows.map((r) => r.id);
  };
  const outcomes = async (rawIds: string[]) => {
    const rows = await modes.sql`
      select r.id, r.status, r.error_msg,
             case when f.event_id = f.raw_event_id then 'raw id' else f.event_id::text end
               as event_id,
             f.event_type, f.account_id, f.user_id, f.occurred_at, f.geo_id, f.properties
        from spectrum.raw_events r
        left join spectrum.fact_events f on f.raw_event_id = r.id
       where r.id = any(${rawIds}::uuid[])`;
    const byId = new Map(rows.map(({ id, ...rest }) => [id as string, rest]));
    return rawIds.map((id) => byId.get(id));
  };

  beforeAll(async () => {
    modes = await testDatabase('extract_modes');
    const first = await insertCorpus([]);
    await modes.sql`call spectrum.process_pending(p_batch_size => 1)`;
    alone = await outcomes(first);
    const second = await insertCorpus([TRIGGER]);
    await modes.sql`call spectrum.process_pending()`;
    together = await outcomes(second.slice(0, corpus.length));
    [triggerRow] = await outcomes(second.slice(corpus.length));
  });
  afterAll(async () => modes?.drop());

  it('ran each payload alone, then all of them in one batch', async () => {
    const runs = await modes.sql`
      select batches, claimed::int from spectrum.pipeline_runs order by started_at`;
    expect(runs).toEqual([
      { batches: corpus.length, claimed: corpus.length },
      { batches: 1, claimed: corpus.length + 1 },
    ]);
    expect(triggerRow).toMatchObject({
      status: 'failed',
      error_msg: 'account_id: "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz" is not a uuid',
    });
  });

  it.each(corpus.map((c, i) => [c.name, i] as const))('%s', (_name, i) => {
    expect(together[i]).toEqual(alone[i]);
    const c = corpus[i]!;
    expect((alone[i] as { status: string }).status).toBe('error' in c.expect ? 'failed' : 'done');
  });
});

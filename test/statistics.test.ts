/*
 * The facts' foreign-key checks are planned from the dimensions' statistics: each batch
 * analyzes a dimension that grew past them (spectrum.analyze_grown_tables), so a small
 * dimension last analyzed while empty is not checked by a sequential scan for every fact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import { ACCOUNT } from './helpers/fixtures.ts';

let db: TestDb;
beforeAll(async () => {
  db = await testDatabase('statistics');
});
afterAll(async () => db?.drop());

const places = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    event_type: 'view',
    account_id: ACCOUNT,
    geo: { country: 'FR', region: `r${i % 7}`, city: `city ${i}` },
  }));

const stats = async (table: string) =>
  (
    await db.sql`select relpages, reltuples::int as reltuples from pg_catalog.pg_class
                  where oid = ${`spectrum.${table}`}::regclass`
  )[0]!;

describe('spectrum.analyze_grown_tables', () => {
  it('analyzes a dimension whose statistics say empty once a batch gave it rows', async () => {
    await db.sql`truncate spectrum.raw_events, spectrum.fact_events, spectrum.event_registry,
                          spectrum.dim_geography`;
    // What a statistics run between a delete and the next inserts leaves: pages, no rows.
    await db.sql`update pg_catalog.pg_class set relpages = 1, reltuples = 0
                  where oid = 'spectrum.dim_geography'::regclass`;
    await insertEvents(db.sql, places(600));
    await runPipeline(db.sql);
    const [n] = await db.sql`select count(*)::int as n from spectrum.dim_geography`;
    expect(n!.n).toBe(600);
    expect((await stats('dim_geography')).reltuples).toBe(600);

    // So the key checks of the next facts are planned on the primary key.
    const plan = await db.sql.begin(async (tx) => {
      await tx`set local plan_cache_mode = force_generic_plan`;
      await tx`prepare geo_check (uuid) as
                 select 1 from only spectrum.dim_geography x where geo_id = $1 for key share of x`;
      const rows = await tx`explain execute geo_check('00000000-0000-0000-0000-000000000000')`;
      await tx`deallocate geo_check`;
      return rows.map((r) => r['QUERY PLAN'] as string).join('\n');
    });
    expect(plan).toContain('dim_geography_pkey');
  });

  it('leaves alone a table that has not doubled since, and says how many it analyzed', async () => {
    await insertEvents(db.sql, places(1));
    await runPipeline(db.sql);
    await db.sql`analyze spectrum.dim_geography, spectrum.dim_accounts`;
    const grown = async () =>
      (
        await db.sql`
          select spectrum.analyze_grown_tables(
                   array['spectrum.dim_geography', 'spectrum.dim_accounts']::regclass[]) as n`
      )[0]!.n;
    expect(await grown()).toBe(0);
    const [accounts] = await db.sql`select count(*)::int as n from spectrum.dim_accounts`;
    await db.sql`update pg_catalog.pg_class set relpages = 1, reltuples = 0
                  where oid = 'spectrum.dim_accounts'::regclass`;
    expect(await grown()).toBe(1);
    expect((await stats('dim_accounts')).reltuples).toBe(accounts!.n);
  });
});

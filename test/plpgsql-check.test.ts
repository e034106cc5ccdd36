/* Every PL/pgSQL routine in schema spectrum passes plpgsql_check with no error. */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { testDatabase, type TestDb } from './helpers/db.ts';

let db: TestDb;
beforeAll(async () => {
  db = await testDatabase('plpgsql_check');
  await db.sql`create extension if not exists plpgsql_check`;
});
afterAll(async () => db?.drop());

it('finds no error in any spectrum routine', async () => {
  // Trigger functions are checked against the table of (one of) their triggers.
  const routines = await db.sql<
    { oid: number; name: string; relid: number; oldtable: string | null }[]
  >`
    select p.oid::int as oid, p.oid::regprocedure::text as name,
           coalesce((select t.tgrelid from pg_trigger t where t.tgfoid = p.oid limit 1), 0)::int
             as relid,
           (select t.tgoldtable from pg_trigger t
             where t.tgfoid = p.oid and t.tgoldtable is not null limit 1) as oldtable
      from pg_proc p join pg_language l on l.oid = p.prolang
     where p.pronamespace = 'spectrum'::regnamespace and l.lanname = 'plpgsql'
     order by 2`;
  expect(routines.length).toBeGreaterThan(5);
  // process_claimed creates its per-session batch table on first use: let it, in the session
  // that runs the check, so plpgsql_check can see the table.
  const session = await db.sql.reserve();
  await session`select spectrum.process_claimed('{}')`;
  const problems: string[] = [];
  for (const r of routines) {
    const rows = await session<{ level: string; message: string; lineno: number | null }[]>`
      select level, message, lineno
        from plpgsql_check_function_tb(${r.oid}::regprocedure, relid => ${r.relid}::oid,
                                       oldtable => ${r.oldtable}::name, fatal_errors => false)`;
    for (const row of rows.filter((x) => x.level === 'error'))
      problems.push(`${r.name} line ${row.lineno}: ${row.message}`);
  }
  session.release();
  expect(problems).toEqual([]);
});

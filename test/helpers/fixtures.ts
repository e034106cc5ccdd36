/*
 * Fixtures the test files share: an account and valid payloads, an empty pipeline, LOGIN
 * roles in the spectrum groups, and the checks that pipeline_status and its counters agree
 * with the rows.
 */
import { expect } from 'vitest';
import { connect, type Sql } from '../../scripts/lib/db.ts';
import type { TestDb } from './db.ts';

/** The account_id of the valid payloads. */
export const ACCOUNT = '8d4a8d2c-4b1e-4f7e-9c53-0a3a3c1d2e10';

/** n valid click events of ACCOUNT spread over five users, each with `extra` merged in. */
export const valid = (n: number, extra: object = {}) =>
  Array.from({ length: n }, (_, i) => ({
    event_type: 'click',
    account_id: ACCOUNT,
    user_id: `u${i % 5}`,
    ...extra,
  }));

/**
 * Empties raw_events and pipeline_runs. The TRUNCATE trigger zeroes the done and failed
 * counters and the done floor; dimensions, facts, partitions and maintenance_runs stay.
 */
export const fresh = (sql: Sql) => sql`truncate spectrum.raw_events, spectrum.pipeline_runs`;

export interface Login {
  role: string;
  sql: Sql;
  /** Closes the connection, drops what the role owns in the database, then the role. */
  drop(): Promise<void>;
}

/**
 * A LOGIN role, member of `group` (none when null), and a connection as it. Roles are
 * cluster-wide: the name carries the test database's name, unique to this file's run. Drop
 * it before the database.
 */
export async function loginRole(db: TestDb, prefix: string, group: string | null): Promise<Login> {
  const role = `${prefix}_${db.name}`;
  await db.sql.unsafe(`create role ${role} login${group ? ` in role ${group}` : ''}`);
  const url = new URL(db.url);
  url.username = role;
  const sql = connect(url.toString(), { max: 1 });
  return {
    role,
    sql,
    drop: async () => {
      await sql.end();
      await db.sql.unsafe(`drop owned by ${role}`);
      await db.sql.unsafe(`drop role ${role}`);
    },
  };
}

/** The done and failed counters, the view and the rows agree; returns the done count. */
export async function counterIsExact(sql: Sql): Promise<number> {
  const [r] = await sql`
    select (select events from spectrum.status_totals where status = 'done')::int as counted,
           (select events from spectrum.pipeline_status where status = 'done')::int as shown,
           (select count(*) from spectrum.raw_events where status = 'done')::int as actual,
           (select events from spectrum.status_totals where status = 'failed')::int
             as failed_counted,
           (select events from spectrum.pipeline_status where status = 'failed')::int
             as failed_shown,
           (select count(*) from spectrum.raw_events where status = 'failed')::int
             as failed_actual`;
  expect(r!.counted).toBe(r!.actual);
  expect(r!.shown).toBe(r!.actual);
  expect(r!.failed_counted).toBe(r!.failed_actual);
  expect(r!.failed_shown).toBe(r!.failed_actual);
  return r!.actual as number;
}

/** pipeline_status shows what the seed's group-by query finds: counts and oldest received_at. */
export async function statusIsExact(sql: Sql): Promise<void> {
  const shown = await sql`
    select status, events::int, oldest_received_at from spectrum.pipeline_status order by status`;
  const seed = await sql`
    select s.status, count(r.status)::int as events, min(r.received_at) as oldest_received_at
      from unnest(array['done', 'failed', 'pending', 'processing']) s(status)
      left join spectrum.raw_events r on r.status = s.status
     group by 1 order by 1`;
  expect(shown).toEqual(seed);
}

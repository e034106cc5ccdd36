/* A database of the test file's own, cloned from the migrated template. */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { connect, withDatabase, type Sql } from '../../scripts/lib/db.ts';

export interface TestDb {
  name: string;
  url: string;
  sql: Sql;
  /** A superuser connection to the server's postgres database. */
  adminUrl: string;
  drop(): Promise<void>;
}

export async function testDatabase(label = 't'): Promise<TestDb> {
  const { adminUrl, template } = inject('pg');
  const prefix = label.replace(/[^a-z0-9_]/g, '_').slice(0, 30);
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = connect(adminUrl, { max: 1 });
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.unsafe(`create database ${name} template ${template}`);
      break;
    } catch (e) {
      // 55006: the template is briefly in use by a concurrent clone.
      if ((e as { code?: string }).code !== '55006' || attempt > 20) throw e;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  await admin.end();
  const url = withDatabase(adminUrl, name);
  const sql = connect(url, { max: 10 });
  return {
    name,
    url,
    sql,
    adminUrl,
    drop: async () => {
      await sql.end();
      const a = connect(adminUrl, { max: 1 });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}

/** Inserts payloads as a producer would and returns their raw ids, in order. */
export async function insertEvents(sql: Sql, payloads: unknown[]): Promise<string[]> {
  if (payloads.length === 0) return [];
  const rows = await sql<{ id: string }[]>`
    insert into spectrum.raw_events (payload)
    select value from jsonb_array_elements(${sql.json(payloads as never)}::jsonb) with ordinality
     order by ordinality
    returning id`;
  return rows.map((r) => r.id);
}

export const runPipeline = (sql: Sql, args = '') =>
  sql.unsafe(`call spectrum.process_pending(${args})`);

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, withDatabase, type Sql } from '../scripts/lib/db.ts';
import { migrateDatabase } from '../scripts/lib/migrate.ts';
import { privateCluster } from './setup/server.ts';
import { testDatabase, type TestDb } from './helpers/db.ts';
import { loginRole } from './helpers/fixtures.ts';

let db: TestDb;
beforeAll(async () => {
  db = await testDatabase('foundation');
});
afterAll(async () => db?.drop());

describe('raw_events', () => {
  it('refuses a payload that is not a JSON object, naming the constraint', async () => {
    for (const bad of ['[1,2]', '"text"', '42', 'null', 'true']) {
      const err =
        await db.sql`insert into spectrum.raw_events (payload) values (${bad}::jsonb)`.catch(
          (e) => e,
        );
      expect(err.code, bad).toBe('23514');
      expect(err.constraint_name).toBe('raw_events_payload_is_object');
    }
  });

  it('accepts any object untouched and fills the defaults', async () => {
    const payload = { anything: [1, { deep: 'x' }], 'weird key': null };
    const [row] = await db.sql`
      insert into spectrum.raw_events (payload) values (${db.sql.json(payload)}) returning *`;
    expect(row!.payload).toEqual(payload);
    expect(row!.status).toBe('pending');
    expect(row!.attempts).toBe(0);
    expect(row!.processed_at).toBeNull();
    expect(row!.error_msg).toBeNull();
    expect(row!.received_at).toBeInstanceOf(Date);
    expect(row!.id).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it('gives time-ordered ids', async () => {
    const ids = await db.sql`
      select spectrum.uuid_v7(now() + (n || ' ms')::interval)::text as id
        from generate_series(1, 50, 7) n`;
    const list = ids.map((r) => r.id as string);
    expect([...list].sort()).toEqual(list);
  });

  it(
    'puts the milliseconds and the microseconds within them ' + 'in the first 15 hex digits',
    async () => {
      const rows = await db.sql`
        select t::text as at, spectrum.uuid_v7(t)::text as id,
               lpad(to_hex(floor(extract(epoch from t) * 1000)::bigint), 12, '0') as ms
          from unnest(array['1970-01-01 00:00:00.000001+00', '2026-12-02 12:00:00.123456+00',
                            '2026-12-02 12:00:00.999999+00', '2038-01-19 03:14:08+00',
                            '2500-01-01 00:00:00.5+00']::timestamptz[]) t`;
      for (const r of rows) {
        const hex = (r.id as string).replace(/-/g, '');
        const micros = Number((r.at as string).match(/\.(\d+)/)?.[1]?.padEnd(6, '0') ?? 0) % 1000;
        expect(hex.slice(0, 12), r.at).toBe((r.ms as string).padStart(12, '0'));
        expect(hex[12], r.at).toBe('7');
        expect(parseInt(hex.slice(13, 16), 16), r.at).toBe(Math.floor((micros * 4096) / 1000));
        expect('89ab', r.at).toContain(hex[16]);
      }
    },
  );

  it('evaluates the id default inline, with no function call per row', async () => {
    const plan = await db.sql`
      explain (verbose, format json) insert into spectrum.raw_events (payload) values ('{}')`;
    const text = JSON.stringify(plan);
    expect(text).toContain('gen_random_uuid()');
    expect(text).not.toContain('uuid_v7');
  });

  it('refuses an unknown status', async () => {
    const err =
      await db.sql`insert into spectrum.raw_events (payload, status) values ('{}', 'lost')`.catch(
        (e) => e,
      );
    expect(err.code).toBe('23514');
    expect(err.constraint_name).toBe('raw_events_status_check');
  });
});

describe('the producer role', () => {
  it('may insert payload (INSERT and COPY) and nothing else', async () => {
    const producer = await loginRole(db, 'producer', 'spectrum_producer');
    const p = producer.sql;
    try {
      await p`insert into spectrum.raw_events (payload) values ('{"event_type":"x"}')`;
      const copy = await p`copy spectrum.raw_events (payload) from stdin`.writable();
      copy.write('{"from":"copy"}\n');
      copy.end();
      await new Promise((ok, fail) => copy.on('finish', ok).on('error', fail));
      const denied = [
        p`select count(*) from spectrum.raw_events`,
        p`insert into spectrum.raw_events (payload, status) values ('{}', 'done')`,
        p`update spectrum.raw_events set status = 'done'`,
        p`delete from spectrum.raw_events`,
        p`select * from spectrum.fact_events`,
        p`select * from spectrum.pipeline_status`,
        p`call spectrum.process_pending()`,
      ];
      for (const q of denied) expect((await q.catch((e) => e)).code).toBe('42501');
    } finally {
      await producer.drop();
    }
    const [n] = await db.sql`
      select count(*)::int as n from spectrum.raw_events
       where payload ? 'from' or payload->>'event_type' = 'x'`;
    expect(n!.n).toBe(2);
  });
});

describe('npm run migrate', () => {
  it('builds an empty database, then changes nothing the second time', async () => {
    const name = `migrate_twice_${db.name}`.slice(0, 60);
    const admin = connect(db.adminUrl, { max: 1 });
    await admin.unsafe(`create database ${name}`);
    const url = withDatabase(db.adminUrl, name);
    const target = connect(url, { max: 1 });
    try {
      const lines: string[] = [];
      await migrateDatabase(url, { log: (l) => lines.push(l) });
      const snapshot = async () =>
        target`select c.relname, c.relkind, p.proname,
                      md5(coalesce(pg_get_functiondef(p.oid), '')) as def
                 from pg_namespace n left join pg_class c on c.relnamespace = n.oid
                 left join pg_proc p on p.pronamespace = n.oid and p.prokind in ('f', 'p')
                where n.nspname = 'spectrum' order by 1, 3`;
      const migrations = async () =>
        (await target`select count(*)::int as n from graphile_migrate.migrations`)[0]!.n;
      const first = await snapshot();
      const applied = await migrations();
      expect(first.length).toBeGreaterThan(20);
      expect(applied).toBeGreaterThan(0);
      expect(lines.filter((l) => /^scheduled /.test(l))).toHaveLength(2);
      await migrateDatabase(url, { log: (l) => lines.push(l) });
      expect(await snapshot()).toEqual(first);
      expect(await migrations()).toBe(applied);
      expect(lines.filter((l) => /^scheduled /.test(l))).toHaveLength(2);
    } finally {
      await target.end();
      await admin`select cron.unschedule(jobid) from cron.job where database = ${name}`;
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    }
  });

  it('succeeds without pg_cron and says so in one line', async () => {
    const cluster = await privateCluster({ preloadCron: false });
    try {
      const admin = connect(cluster.url('postgres'), { max: 1 });
      await admin`create database plain`;
      await admin.end();
      const lines: string[] = [];
      await migrateDatabase(withDatabase(cluster.url('postgres'), 'plain'), {
        log: (l) => lines.push(l),
      });
      expect(lines.filter((l) => /pg_cron/.test(l))).toHaveLength(1);
      expect(lines.join('\n')).toMatch(/pg_cron is not installed/);
      const sql = connect(cluster.url('plain'), { max: 1 });
      const [t] = await sql`select to_regclass('spectrum.raw_events') is not null as ok`;
      await sql.end();
      expect(t!.ok).toBe(true);
    } finally {
      cluster.stop();
    }
  });
});

describe('the schema', () => {
  const uncommented = (sql: Sql) => sql<{ object: string }[]>`
    select c.oid::regclass::text as object
      from pg_class c
     where c.relnamespace = 'spectrum'::regnamespace and c.relkind in ('r', 'p', 'v', 'm')
       and obj_description(c.oid, 'pg_class') is null
    union all
    select p.oid::regprocedure::text
      from pg_proc p
     where p.pronamespace = 'spectrum'::regnamespace and obj_description(p.oid, 'pg_proc') is null
    union all
    select t.oid::regtype::text
      from pg_type t left join pg_class r on r.oid = t.typrelid
     where t.typnamespace = 'spectrum'::regnamespace
       and (t.typtype in ('d', 'e') or (t.typtype = 'c' and r.relkind = 'c'))
       and obj_description(t.oid, 'pg_type') is null
     order by 1`;

  it('says what every table, view, routine and type of schema spectrum is (COMMENT ON)', async () => {
    expect((await uncommented(db.sql)).map((m) => m.object)).toEqual([]);
    // The check itself sees an object without a comment.
    await db.sql
      .begin(async (tx) => {
        await tx`create function spectrum.planted() returns int language sql as 'select 1'`;
        await tx`create type spectrum.planted_type as (x int)`;
        expect((await uncommented(tx as unknown as Sql)).map((m) => m.object)).toEqual([
          'spectrum.planted()',
          'spectrum.planted_type',
        ]);
        throw new Error('rollback');
      })
      .catch((e) => expect((e as Error).message).toBe('rollback'));
  });
});

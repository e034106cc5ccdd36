/*
 * Least privilege, tested with real LOGIN roles granted the NOLOGIN group roles, as a DBA
 * would set them up: what spectrum_producer, spectrum_operator and spectrum_reader can and
 * cannot do, that PUBLIC gets nothing, how security definer routines are set up, and that a
 * role planting functions and operators in a schema on the pipeline's search_path changes
 * nothing. Roles are cluster-wide: their names carry this database's random suffix, and they
 * are dropped at the end. Each test starts from an empty raw_events.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../scripts/lib/db.ts';
import { testDatabase, type TestDb } from './helpers/db.ts';
import { ACCOUNT, fresh, loginRole, type Login } from './helpers/fixtures.ts';

let db: TestDb;
const logins: Record<'producer' | 'operator' | 'reader' | 'nobody' | 'planter', Login> =
  {} as never;

const DENIED = '42501';

beforeAll(async () => {
  db = await testDatabase('security');
  const groups = {
    producer: 'spectrum_producer',
    operator: 'spectrum_operator',
    reader: 'spectrum_reader',
    nobody: null,
    planter: 'spectrum_producer',
  };
  for (const [name, group] of Object.entries(groups) as [keyof typeof logins, string | null][])
    logins[name] = await loginRole(db, `sec_${name}`, group);
});
afterAll(async () => {
  for (const login of Object.values(logins)) await login.drop();
  await db?.drop();
});
beforeEach(() => fresh(db.sql));

/** The statements (by text) that did not fail with SQLSTATE 42501, with what they did instead. */
async function notDenied(sql: Sql, statements: string[]): Promise<string[]> {
  const wrong: string[] = [];
  for (const s of statements) {
    const r = await sql.unsafe(s).then(
      () => 'succeeded',
      (e: { code?: string }) => e.code,
    );
    if (r !== DENIED) wrong.push(`${s} → ${r}`);
  }
  return wrong;
}

/**
 * Tables and views of the schema (not partitions), each with its first column that may be
 * written.
 */
async function relations(kinds = ['r', 'p', 'v']) {
  const rows = await db.sql`
    select c.relname, c.relkind, (select a.attname from pg_catalog.pg_attribute a
             where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
               and a.attidentity = '' and a.attgenerated = ''
             order by a.attnum limit 1) as col
      from pg_catalog.pg_class c
     where c.relnamespace = 'spectrum'::regnamespace and c.relkind = any(${kinds})
       and not c.relispartition
     order by 1`;
  return rows.map((r) => ({
    name: `spectrum.${r.relname}`,
    kind: r.relkind as string,
    col: r.col as string,
  }));
}

/** The routines of schema spectrum a role may execute (by has_function_privilege). */
const executable = async (role: string) =>
  (
    await db.sql`select p.proname from pg_catalog.pg_proc p
                  where p.pronamespace = 'spectrum'::regnamespace
                    and has_function_privilege(${role}, p.oid, 'EXECUTE')
                  order by 1`
  ).map((r) => r.proname as string);

/**
 * Every kind of write on a table (views are not written to: PostgreSQL refuses that before
 * checking privileges).
 */
const everyWrite = ({ name, col }: { name: string; col: string }) => [
  `insert into ${name} (${col}) select ${col} from ${name} limit 0`,
  `update ${name} set ${col} = ${col}`,
  `delete from ${name}`,
  `truncate ${name}`,
];

async function copyIn(sql: Sql, statement: string, line: string) {
  const stream = await sql.unsafe(statement).writable();
  stream.write(`${line}\n`);
  stream.end();
  await new Promise((ok, fail) => stream.on('finish', ok).on('error', fail));
}

describe('spectrum_producer', () => {
  it('may insert payload by INSERT and by COPY', async () => {
    const p = logins.producer.sql;
    const payload = JSON.stringify({ event_type: 'by_insert', account_id: ACCOUNT });
    await p`insert into spectrum.raw_events (payload) values (${payload}::text::jsonb)`;
    await copyIn(
      p,
      'copy spectrum.raw_events (payload) from stdin',
      JSON.stringify({ event_type: 'by_copy', account_id: ACCOUNT }),
    );
    const rows = await db.sql`
      select payload ->> 'event_type' as t, status from spectrum.raw_events
       where payload ->> 'event_type' like 'by_%' order by 1`;
    expect(rows).toEqual([
      { t: 'by_copy', status: 'pending' },
      { t: 'by_insert', status: 'pending' },
    ]);
  });

  it('may not read, change, delete or truncate raw_events, nor set any other column', async () => {
    const statements = [
      'select payload from spectrum.raw_events',
      'select count(*) from spectrum.raw_events',
      `insert into spectrum.raw_events (payload) values ('{}') returning id`,
      ...['id', 'received_at', 'status', 'processed_at', 'error_msg', 'attempts'].map(
        (c) => `insert into spectrum.raw_events (payload, ${c}) values ('{}', default)`,
      ),
      `insert into spectrum.raw_events (payload, status) values ('{}', 'done')`,
      `insert into spectrum.raw_events (id, payload) values (gen_random_uuid(), '{}')`,
      `update spectrum.raw_events set status = 'done'`,
      `update spectrum.raw_events set payload = '{}'`,
      'delete from spectrum.raw_events',
      'truncate spectrum.raw_events',
      'copy spectrum.raw_events to stdout',
      'copy (select payload from spectrum.raw_events) to stdout',
    ];
    expect(await notDenied(logins.producer.sql, statements)).toEqual([]);
    const copy = await copyIn(
      logins.producer.sql,
      'copy spectrum.raw_events (payload, status) from stdin',
      '{}\tdone',
    ).catch((e) => e);
    expect(copy.code).toBe(DENIED);
  });

  it('may not touch any other table or view of the schema, nor create objects in it', async () => {
    const others = (await relations()).filter((t) => t.name !== 'spectrum.raw_events');
    expect(others.map((t) => t.name)).toEqual(
      expect.arrayContaining([
        'spectrum.fact_events',
        'spectrum.dim_accounts',
        'spectrum.pipeline_status',
        'spectrum.pipeline_runs',
      ]),
    );
    const statements = [
      ...others.map((t) => `select * from ${t.name}`),
      ...others.filter((t) => t.kind !== 'v').flatMap(everyWrite),
      'create table spectrum.planted (x int)',
      'create view spectrum.planted as select 1',
      'create function spectrum.planted() returns int language sql as $$ select 1 $$',
    ];
    expect(await notDenied(logins.producer.sql, statements)).toEqual([]);
  });

  it('may execute no routine but uuid_v7, the id default its inserts evaluate', async () => {
    expect(await executable(logins.producer.role)).toEqual(['uuid_v7']);
    const calls = [
      'call spectrum.process_pending()',
      `select spectrum.reprocess(status => 'failed')`,
      `select * from spectrum.extract_event('{}')`,
      `select spectrum.json_excerpt('{}')`,
      `select spectrum.try_uuid('x')`,
    ];
    expect(await notDenied(logins.producer.sql, calls)).toEqual([]);
  });
});

describe('spectrum_operator', () => {
  it('may read raw events, pipeline_status, pipeline_runs and failure_reasons', async () => {
    await db.sql`insert into spectrum.raw_events (payload) values ('{"event_type": "x"}')`;
    const o = logins.operator.sql;
    for (const t of ['raw_events', 'pipeline_status', 'pipeline_runs', 'failure_reasons']) {
      await expect(o.unsafe(`select * from spectrum.${t} limit 1`), t).resolves.toBeDefined();
    }
    const [n] = await o`select count(*)::int as n from spectrum.raw_events`;
    expect(n!.n).toBeGreaterThan(0);
  });

  it('may call reprocess, health and extract_event', async () => {
    const o = logins.operator.sql;
    const [failed] = await db.sql`
      insert into spectrum.raw_events (payload, status, processed_at, error_msg, attempts)
      values ('{"event_type":"x"}', 'failed', now(), 'account_id: missing', 1) returning id`;
    const [r] = await o`select spectrum.reprocess(ids => array[${failed!.id}]::uuid[]) as n`;
    expect(Number(r!.n)).toBe(1);
    const [row] =
      await db.sql`select status, attempts from spectrum.raw_events where id = ${failed!.id}`;
    expect(row).toEqual({ status: 'pending', attempts: 0 });
    const [h] = await o`select ok from spectrum.health()`;
    expect(typeof h!.ok).toBe('boolean');
    const [e] = await o`
      select error_msg from spectrum.extract_event('{"event_type":"x","account_id":"abc"}')`;
    expect(e!.error_msg).toBe('account_id: "abc" is not a uuid');
  });

  it(
    'may not insert, update, delete or truncate anything, ' + 'nor read dimensions and facts',
    async () => {
      const tables = await relations(['r', 'p']);
      const statements = [
        ...tables.flatMap(everyWrite),
        `insert into spectrum.raw_events (payload) values ('{}')`,
        ...['dim_accounts', 'dim_users', 'dim_geography', 'fact_events'].map(
          (t) => `select * from spectrum.${t}`,
        ),
        'call spectrum.process_pending()',
        'call spectrum.maintenance()',
        'create table spectrum.planted (x int)',
      ];
      expect(await notDenied(logins.operator.sql, statements)).toEqual([]);
    },
  );

  it('may execute exactly the routines an operator needs', async () => {
    expect(await executable(logins.operator.role)).toEqual(
      [
        'extract_event',
        'health',
        'json_excerpt',
        'reprocess',
        'reprocess_chunk',
        'reprocess_in_chunks',
        'reprocess_start',
        'try_timestamptz',
        'try_uuid',
        'uuid_v7',
      ].sort(),
    );
  });
});

describe('spectrum_reader', () => {
  it('may read the dimensions and facts', async () => {
    for (const t of ['dim_accounts', 'dim_users', 'dim_geography', 'fact_events']) {
      const r = await logins.reader.sql.unsafe(`select * from spectrum.${t} limit 1`).then(
        () => 'ok',
        (e) => e.code,
      );
      expect(r, t).toBe('ok');
    }
  });

  it('may not read raw events, status or runs, nor change anything', async () => {
    const tables = await relations(['r', 'p']);
    const statements = [
      ...[
        'raw_events',
        'pipeline_status',
        'pipeline_runs',
        'failure_reasons',
        'event_registry',
        'status_totals',
      ].map((t) => `select * from spectrum.${t}`),
      ...tables.flatMap(everyWrite),
      'create table spectrum.planted (x int)',
    ];
    expect(await notDenied(logins.reader.sql, statements)).toEqual([]);
  });

  it('may execute no routine', async () => {
    expect(await executable(logins.reader.role)).toEqual([]);
  });
});

describe('PUBLIC', () => {
  it('gives a role without membership nothing on the schema or in it', async () => {
    const role = logins.nobody.role;
    const [schema] = await db.sql`
      select has_schema_privilege(${role}, 'spectrum', 'USAGE') as usage,
             has_schema_privilege(${role}, 'spectrum', 'CREATE') as create`;
    expect(schema).toEqual({ usage: false, create: false });
    const tables = await db.sql`
      select c.oid::regclass::text as name from pg_catalog.pg_class c
       where c.relnamespace = 'spectrum'::regnamespace
         and case when c.relkind in ('r', 'p', 'v', 'm', 'f')
                  then has_table_privilege(${role}, c.oid,
                         'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') end`;
    expect(tables).toEqual([]);
    const sequences = await db.sql`
      select c.oid::regclass::text as name from pg_catalog.pg_class c
       where c.relnamespace = 'spectrum'::regnamespace
         and case when c.relkind = 'S'
                  then has_sequence_privilege(${role}, c.oid, 'USAGE, SELECT, UPDATE') end`;
    expect(sequences).toEqual([]);
    expect(await executable(role)).toEqual([]);
  });

  it('has EXECUTE on no routine of the schema (pg_proc.proacl)', async () => {
    const open = await db.sql`
      select p.oid::regprocedure::text as routine from pg_catalog.pg_proc p
       where p.pronamespace = 'spectrum'::regnamespace
         and (p.proacl is null
              or exists (select from pg_catalog.aclexplode(p.proacl) a
                          where a.grantee = 0 and a.privilege_type = 'EXECUTE'))
       order by 1`;
    expect(open.map((r) => r.routine)).toEqual([]);
  });

  it('lets a login role without membership do nothing', async () => {
    const statements = [
      'select * from spectrum.raw_events',
      `insert into spectrum.raw_events (payload) values ('{}')`,
      'select * from spectrum.pipeline_status',
      'select spectrum.uuid_v7()',
      `select * from spectrum.extract_event('{}')`,
    ];
    expect(await notDenied(logins.nobody.sql, statements)).toEqual([]);
  });
});

describe('security definer routines', () => {
  it(
    'pin search_path to trusted schemas, pg_temp last, ' +
      'and belong to a role without special powers',
    async () => {
      const routines = await db.sql`
        select p.oid::regprocedure::text as routine, r.rolname as owner, r.rolsuper,
               r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication, r.rolcanlogin,
               has_schema_privilege(r.oid, 'spectrum', 'CREATE') as owner_may_create,
               (select substr(c, length('search_path=') + 1)
                  from unnest(p.proconfig) c where c like 'search_path=%') as search_path
          from pg_catalog.pg_proc p join pg_catalog.pg_roles r on r.oid = p.proowner
         where p.pronamespace = 'spectrum'::regnamespace and p.prosecdef
         order by 1`;
      expect(routines.map((r) => r.routine)).toContain(
        'spectrum.reprocess(text,uuid[],timestamp with time zone,timestamp with time zone,text,uuid,boolean)',
      );
      for (const r of routines) {
        expect(r, r.routine).toMatchObject({
          rolsuper: false,
          rolcreaterole: false,
          rolcreatedb: false,
          rolbypassrls: false,
          rolreplication: false,
          rolcanlogin: false,
          owner_may_create: false,
        });
        expect(r.search_path, r.routine).not.toBeNull();
        const path = (r.search_path as string)
          .split(',')
          .map((s) => s.trim().replace(/^"|"$/g, ''));
        expect(
          path.every((s) => ['pg_catalog', 'spectrum', 'pg_temp'].includes(s)),
          `${r.routine}: ${r.search_path}`,
        ).toBe(true);
        expect(path.at(-1), r.routine).toBe('pg_temp');
      }
    },
  );
});

describe('a search_path hijack', () => {
  it('does not change what the pipeline or extract_event do', async () => {
    const planter = logins.planter;
    // As in a cluster upgraded from PostgreSQL 14, where every role may create in public.
    await db.sql.unsafe(`grant create on schema public to ${planter.role}`);
    await planter.sql.unsafe(`
      create table public.hijacked (what text, by text default current_user);
      grant insert on public.hijacked to public;
      create function public.cardinality(uuid[]) returns integer language sql
        as $$ insert into public.hijacked (what) values ('cardinality') returning 0 $$;
      create function public.pg_column_size(jsonb) returns integer language sql
        as $$ insert into public.hijacked (what) values ('pg_column_size') returning 0 $$;
      create function public.arrow(jsonb, jsonb) returns jsonb language sql
        as $$ insert into public.hijacked (what) values ('->') returning '"hijacked"'::jsonb $$;
      create operator public.-> (leftarg = jsonb, rightarg = jsonb, function = public.arrow);
      create function public.cat(text, integer) returns text language sql
        as $$ insert into public.hijacked (what) values ('||') returning 'hijacked' $$;
      create operator public.|| (leftarg = text, rightarg = integer, function = public.cat);
      create function public.agg(timestamptz[], timestamptz) returns timestamptz[] language sql
        as $$ insert into public.hijacked (what) values ('array_agg')
              returning '{}'::timestamptz[] $$;
      create aggregate public.array_agg(timestamptz) (sfunc = public.agg, stype = timestamptz[]);
      create function public.mod8(bigint, integer) returns bigint language sql
        as $$ insert into public.hijacked (what) values ('%') returning 0::bigint $$;
      create operator public.% (leftarg = bigint, rightarg = integer, function = public.mod8);
      create function public.div8(bigint, integer) returns bigint language sql
        as $$ insert into public.hijacked (what) values ('/') returning 0::bigint $$;
      create operator public./ (leftarg = bigint, rightarg = integer, function = public.div8);
    `);
    for (const payload of [
      { event_type: 'planted', account_id: ACCOUNT, geo: { country: 'FR' } },
      { event_type: 'p'.repeat(300), account_id: ACCOUNT },
    ])
      await planter.sql`
        insert into spectrum.raw_events (payload) values (${JSON.stringify(payload)}::text::jsonb)`;

    // A fresh superuser session with the default search_path ("$user", public), like the
    // pg_cron job's.
    const dba = connect(db.url, { max: 1 });
    try {
      const [path] = await dba`select current_setting('search_path') as p`;
      expect(path!.p).toContain('public');
      // The id default (uuid_v7) runs for every insert and inside maintenance.
      await dba`insert into spectrum.raw_events (payload) values ('{"event_type": "by the dba"}')`;
      await dba`call spectrum.maintenance()`;
      await dba`call spectrum.process_pending()`;
      const long = { event_type: 'q'.repeat(300), account_id: ACCOUNT, geo: { country: 'DE' } };
      const [e] = await dba`
        select error_msg, country
          from spectrum.extract_event(${JSON.stringify(long)}::text::jsonb)`;
      expect(e).toEqual({
        error_msg: 'event_type: text of 300 characters exceeds limits.maxTextLength (200)',
        country: 'DE',
      });
    } finally {
      await dba.end();
    }
    const hijacked = await db.sql`select what, by from public.hijacked`;
    expect(hijacked).toEqual([]);
    const outcomes = await db.sql`
      select left(r.payload #>> '{event_type}', 10) as t, r.status, r.error_msg, g.country
        from spectrum.raw_events r
        left join spectrum.fact_events f on f.raw_event_id = r.id
        left join spectrum.dim_geography g on g.geo_id = f.geo_id
       where r.payload #>> '{event_type}' in ('planted', ${'p'.repeat(300)})
       order by 1`;
    expect(outcomes).toEqual([
      { t: 'planted', status: 'done', error_msg: null, country: 'FR' },
      {
        t: 'pppppppppp',
        status: 'failed',
        error_msg: 'event_type: text of 300 characters exceeds limits.maxTextLength (200)',
        country: null,
      },
    ]);
    await db.sql.unsafe(`drop owned by ${planter.role}`);
  });
});

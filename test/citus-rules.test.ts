/*
 * The Citus rules (scripts/lib/citus-rules.ts) on the project's SQL, without a database: every
 * finding on sql/*.sql must be in ACCEPTED, every ACCEPTED entry must still match a finding, and
 * planted snippets show that each rule reports what it should and nothing else.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BY_ACCOUNT,
  CITUS_KEYS,
  DISTRIBUTION,
  checkCitusRules,
  placement,
  placements,
  tokenize,
  type Finding,
  type Rule,
} from '../scripts/lib/citus-rules.ts';
import { projectRoot } from '../scripts/lib/paths.ts';

const sqlDir = join(projectRoot, 'sql');
const sqlFiles = () =>
  readdirSync(sqlDir)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((name) => ({ name, text: readFileSync(join(sqlDir, name), 'utf8') }));

/**
 * Findings on today's sql/ that the Citus form still has to resolve (docs/citus.md). `statement`
 * is a piece of the reported statement; an entry that matches no finding fails the test.
 */
const ACCEPTED: { file: string; rule: Rule; statement: string; why: string }[] = [];

const check = (text: string) => checkCitusRules([{ name: 'snippet.sql', text }]);
const rules = (text: string) => check(text).map((f) => f.rule);
const fn = (body: string) => `create or replace function spectrum.f() returns void
language plpgsql volatile as $$
begin
${body}
end
$$;`;

describe('the Citus rules on sql/', () => {
  const findings = checkCitusRules(sqlFiles());
  const accepts = (a: (typeof ACCEPTED)[number], f: Finding) =>
    a.file === f.file && a.rule === f.rule && f.statement.includes(a.statement);

  it('report nothing beyond the accepted findings', () => {
    const fresh = findings.filter((f) => !ACCEPTED.some((a) => accepts(a, f)));
    expect(fresh.map((f) => `${f.file}:${f.line} ${f.rule}: ${f.message}: ${f.statement}`)).toEqual(
      [],
    );
  });

  it('still make every accepted finding (the list cannot go stale)', () => {
    const stale = ACCEPTED.filter((a) => !findings.some((f) => accepts(a, f)));
    expect(stale).toEqual([]);
  });

  it('read the function bodies, with the lines of the file', () => {
    const found = check(
      `select 1;\n${fn(`perform from spectrum.raw_events\n   where id = v_id for update;`)}`,
    );
    expect(found.map((f) => [f.rule, f.line])).toEqual([['for-update', 6]]);
  });
});

describe('the distribution map', () => {
  const citusTs = readFileSync(join(projectRoot, 'scripts', 'lib', 'citus.ts'), 'utf8');

  it('is what distribute() applies', () => {
    expect(BY_ACCOUNT).toEqual(['dim_accounts', 'dim_users', 'fact_events', 'event_registry']);
    expect(citusTs).toContain("import { BY_ACCOUNT } from './citus-rules.ts'");
    expect(citusTs).toMatch(/create_distributed_table\('spectrum\.raw_events', 'bucket'/);
    expect(DISTRIBUTION.raw_events).toBe('bucket');
    for (const [name, cols] of Object.entries(CITUS_KEYS))
      expect(citusTs).toContain(`add constraint ${name} primary key (${cols.join(', ')})`);
  });

  it('names tables that sql/ creates, and makes every other table a reference table', () => {
    const map = placements(sqlFiles());
    for (const [table, column] of Object.entries(DISTRIBUTION)) expect(map[table]).toBe(column);
    for (const table of ['dim_geography', 'status_totals', 'pipeline_runs', 'raw_buckets'])
      expect(map[table]).toBe('reference');
    expect(placement('fact_events')).toBe('account_id');
  });
});

describe('the tokenizer', () => {
  it('keeps quotes, dollar quotes and comments whole', () => {
    const t = tokenize(`select 'a;b''c', $x$ ; $$ $x$, "q;""", e'\\'' -- ; x\n/* /* ; */ */ 1;`);
    expect(t.filter((x) => x.kind === 'op' && x.value === ';')).toHaveLength(1);
    expect(t.find((x) => x.kind === 'string')?.value).toBe("a;b'c");
    expect(t.find((x) => x.kind === 'dollar')?.value).toBe(' ; $$ ');
    expect(t.find((x) => x.kind === 'ident')?.value).toBe('q;"');
    expect(t.filter((x) => x.kind === 'string')[1]?.value).toBe("'");
    expect(t.filter((x) => x.kind === 'comment')).toHaveLength(2);
  });

  it('finds no statement inside a string or a comment', () => {
    expect(
      check(
        fn(`perform 'select id from spectrum.raw_events for update';
  -- select id from spectrum.raw_events for update;
  /* update spectrum.status_totals set events = random(); */`),
      ),
    ).toEqual([]);
  });
});

describe('rule 1: unique keys carry the distribution column', () => {
  it('reports keys and unique indexes of distributed tables without it', () => {
    const found = check(`
      create table if not exists spectrum.dim_users (
        account_id uuid not null, user_id text not null, email text unique,
        constraint dim_users_pkey primary key (user_id));
      alter table spectrum.fact_events add constraint fact_events_event_key unique (event_id);
      create unique index if not exists raw_events_payload_idx on spectrum.raw_events (id, received_at);`);
    expect(found.map((f) => [f.rule, f.table, f.line])).toEqual([
      ['unique-key', 'dim_users', 3],
      ['unique-key', 'dim_users', 4],
      ['unique-key', 'fact_events', 5],
      ['unique-key', 'raw_events', 6],
    ]);
  });

  it('judges a key by its Citus form, and leaves reference tables alone', () => {
    expect(
      check(`
      create table spectrum.event_registry (event_id uuid, account_id uuid,
        constraint event_registry_pkey primary key (event_id));
      create table spectrum.raw_events (id uuid, bucket integer, constraint raw_events_pkey primary key (id));
      create table spectrum.dim_accounts (account_id uuid primary key, name text);
      create unique index on spectrum.dim_users (account_id, user_id);
      create table spectrum.dim_geography (geo_id uuid primary key, city text unique);`),
    ).toEqual([]);
  });

  it('reports ON CONFLICT targets without it, by columns or through the constraint', () => {
    const found = check(`
      create table spectrum.dim_users (account_id uuid, user_id text,
        constraint dim_users_user_key unique (user_id));
      ${fn(`insert into spectrum.event_registry as x (event_id, account_id) values (1, 2)
    on conflict (event_id) do update set account_id = excluded.account_id;
  with w as (insert into spectrum.dim_users (account_id, user_id) values (1, 'u')
    on conflict on constraint dim_users_user_key do nothing returning 1) select from w;`)}`);
    expect(found.filter((f) => f.statement.startsWith('insert')).map((f) => f.table)).toEqual([
      'event_registry',
      'dim_users',
    ]);
  });

  it('accepts ON CONFLICT targets with it', () => {
    expect(
      check(
        fn(`insert into spectrum.dim_users (account_id, user_id) values (1, 'u')
    on conflict (account_id, user_id) do nothing;
  insert into spectrum.event_registry (event_id, account_id) values (1, 2)
    on conflict on constraint event_registry_pkey do nothing;
  insert into spectrum.fact_events (event_id, account_id) values (1, 2) on conflict do nothing;
  insert into spectrum.dim_geography (geo_id) values (1) on conflict (geo_id) do nothing;`),
      ),
    ).toEqual([]);
  });
});

describe('rule 2: FOR UPDATE/SHARE on a distributed table has an equality on its column', () => {
  it('reports locking reads without it, also when the equality is only in a subquery', () => {
    const found = check(
      fn(`select array_agg(id) into v_ids from (select id from spectrum.raw_events
    where status = 'pending' order by id limit 10 for update skip locked) c;
  perform from spectrum.dim_accounts d where d.first_seen_at < now() for share;
  select id into v_id from spectrum.raw_events r
   where r.id in (select id from spectrum.raw_events where bucket = 3) for update;`),
    );
    expect(found.map((f) => [f.rule, f.table])).toEqual([
      ['for-update', 'raw_events'],
      ['for-update', 'dim_accounts'],
      ['for-update', 'raw_events'],
    ]);
  });

  it('accepts locking reads with it, and any lock on a reference table', () => {
    expect(
      check(
        fn(`select id into v_id from spectrum.raw_events where bucket = v_bucket and id > v_from
   order by id limit 1 for update skip locked;
  perform from spectrum.dim_users u where v_account = u.account_id for no key update;
  perform from spectrum.status_totals where status = 'done' for update;`),
      ),
    ).toEqual([]);
  });

  /** The shape of sql/150_claim_pending.sql: one claim per server kind, by raw_buckets. */
  const claim = (single: string, citus: string) => `
    create or replace function spectrum.claim(p_limit integer) returns uuid[]
    language plpgsql volatile as $$
    declare
      v_buckets integer[];
      v_ids uuid[];
    begin
      select array_agg(bucket order by bucket) into v_buckets from spectrum.raw_buckets;
      if v_buckets is null then
        ${single}
        select array_agg(id) into v_ids
          from (select id from spectrum.raw_events where status = 'pending'
                 order by id limit p_limit for update skip locked) c;
      else
        for i in 1 .. cardinality(v_buckets) loop
          ${citus}
          select array_agg(id) into v_ids
            from (select id from spectrum.raw_events where bucket = v_buckets[i]
                   order by id limit p_limit for update skip locked) c;
          exit when v_ids is not null;
        end loop;
      end if;
      return v_ids;
    end
    $$;`;
  const marker = '-- citus: single server only';

  it('lets the marker exempt the claim branch taken when raw_buckets is empty', () => {
    expect(check(claim('', '')).map((f) => [f.rule, f.line])).toEqual([['for-update', 13]]);
    expect(check(claim(marker, ''))).toEqual([]);
    expect(
      rules(
        fn(`if v_buckets is not null then
    perform from spectrum.raw_events where bucket = v_buckets[1] for update;
  else
    ${marker}
    perform from spectrum.raw_events where id = v_id for update;
  end if;`).replace(
          'begin',
          'begin select array_agg(bucket) into v_buckets from spectrum.raw_buckets;',
        ),
      ),
    ).toEqual([]);
  });

  it('reports a marker on the Citus branch, outside any branch, or on no locking statement', () => {
    expect(rules(claim('', marker))).toEqual(['for-update', 'marker']);
    expect(
      rules(
        fn(`-- citus: single server only
  perform from spectrum.raw_events where id = v_id for update;`),
      ),
    ).toEqual(['marker']);
    expect(
      rules(
        fn(`if not exists (select from spectrum.raw_buckets) then
    -- citus: single server only
    perform from spectrum.raw_events where id = v_id;
  end if;`),
      ),
    ).toEqual(['marker']);
    expect(
      rules(
        fn(`if not exists (select from spectrum.raw_buckets) then
    -- citus: single server only
    perform from spectrum.raw_events where id = v_id for update;
  end if;`),
      ),
    ).toEqual([]);
  });
});

describe('rule 3: no volatile function in an UPDATE, DELETE or ON CONFLICT … DO UPDATE', () => {
  it('reports volatile calls in SET and WHERE, and mutable calls in CASE/COALESCE', () => {
    const found = check(`
      create or replace function spectrum.uuid_v7() returns uuid language sql volatile
        as $$ select gen_random_uuid() $$;
      create or replace function spectrum.pick() returns int language sql as $$ select 1 $$;
      ${fn(`update spectrum.pipeline_runs set finished_at = clock_timestamp() where run_id = v_run;
  update spectrum.raw_events set status = 'pending' where received_at < pg_catalog.clock_timestamp();
  update spectrum.raw_events e
     set error_msg = case when e.attempts > 1 then format('%s tries', e.attempts) else 'x' end;
  update spectrum.raw_events set processed_at = coalesce(processed_at, now());
  update spectrum.raw_events set id = spectrum.uuid_v7(), bucket = spectrum.pick() where id = v_id;
  delete from spectrum.raw_events where id = any (v_ids) and random() < 0.5;
  insert into spectrum.dim_accounts as d (account_id, last_seen_at) values (v_a, now())
    on conflict (account_id) do update set last_seen_at = clock_timestamp();
  execute 'update spectrum.raw_events set processed_at = clock_timestamp() where ' || v_where;`)}`);
    expect(found.map((f) => [f.rule, f.table, f.message.split(' ').slice(0, 2).join(' ')])).toEqual(
      [
        ['volatile', 'pipeline_runs', 'volatile clock_timestamp()'],
        ['volatile', 'raw_events', 'volatile clock_timestamp()'],
        ['volatile', 'raw_events', 'non-immutable format'],
        ['volatile', 'raw_events', 'non-immutable now'],
        ['volatile', 'raw_events', 'volatile uuid_v7()'],
        ['volatile', 'raw_events', 'volatile pick()'],
        ['volatile', 'raw_events', 'volatile random()'],
        ['volatile', 'dim_accounts', 'volatile clock_timestamp()'],
        ['volatile', 'raw_events', 'volatile clock_timestamp()'],
      ],
    );
  });

  it('reports stable calls given a column in an UPDATE, and any in ON CONFLICT … DO UPDATE', () => {
    const found = check(`
      create table spectrum.pipeline_runs (run_id bigint, note text);
      ${fn(`update spectrum.pipeline_runs set note = concat_ws('; ', note, v_note) where run_id = v_id;
  update spectrum.raw_events e set processed_at = now() where e.error_msg = format('%s', e.attempts);
  insert into spectrum.dim_accounts as d (account_id) values (v_a)
    on conflict (account_id) do update set last_seen_at = now() where d.first_seen_at < now();`)}`);
    expect(found.map((f) => f.message)).toEqual([
      'stable concat_ws() given a column in the SET of spectrum.pipeline_runs',
      'stable format() given a column in the WHERE of spectrum.raw_events',
      'non-immutable now in the ON CONFLICT … SET of spectrum.dim_accounts',
      'non-immutable now in the ON CONFLICT … WHERE of spectrum.dim_accounts',
    ]);
  });

  it('accepts values computed beforehand, stable calls outside CASE, and temporary tables', () => {
    expect(
      check(
        fn(`v_now := clock_timestamp();
  update spectrum.pipeline_runs set finished_at = v_now, note = format('%s', v_note) where run_id = v_run;
  update spectrum.raw_events set processed_at = now() where id = any (v_ids);
  with bad as (select id, case when n > 1 then format('%s', n) end as msg from spectrum.raw_events)
  update spectrum.raw_events e set error_msg = bad.msg from bad where e.id = bad.id;
  update pg_temp.batch set id = gen_random_uuid();
  insert into spectrum.dim_accounts as d (account_id, last_seen_at) values (v_a, clock_timestamp())
    on conflict (account_id) do update set last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at);`),
      ),
    ).toEqual([]);
  });
});

describe('the rules agree with Citus', () => {
  // Each statement as Citus 13.2 answered it (a coordinator and one worker from scripts/lib/citus.ts,
  // a hash-distributed and a reference table with these columns): the check flags what it refused.
  const tables = `
    create table spectrum.dim_users (account_id int, id int, t timestamptz, s text,
      constraint dim_users_pkey primary key (account_id, id));
    create table spectrum.status_totals (k int primary key, t timestamptz, s text);`;
  const measured: [refused: boolean, statement: string][] = [
    [true, `update spectrum.status_totals set t = clock_timestamp() where k = 1`],
    [false, `update spectrum.status_totals set t = now() where k = 1`],
    [true, `update spectrum.status_totals set t = case when k = 1 then now() end where k = 1`],
    [true, `update spectrum.dim_users set s = case when id = 1 then format('%s', id) else 'y' end`],
    [true, `update spectrum.dim_users set t = coalesce(t, now())`],
    [true, `update spectrum.dim_users set s = format('%s', id)`],
    [false, `update spectrum.dim_users set s = format('%s', 1)`],
    [true, `update spectrum.dim_users x set s = format('%s', x.s)`],
    [true, `update spectrum.dim_users set s = 'z' where s = format('%s', id)`],
    [true, `update spectrum.dim_users set s = 'z' where t < clock_timestamp()`],
    [false, `update spectrum.dim_users set s = 'z' where t < now() - interval '1 day'`],
    [true, `delete from spectrum.dim_users where t > clock_timestamp() + interval '1 day'`],
    [false, `delete from spectrum.dim_users where t > now() + interval '1 day'`],
    [false, `insert into spectrum.dim_users values (2, 1000, clock_timestamp(), random()::text)`],
    [
      true,
      `insert into spectrum.dim_users as d values (1, 1, now(), 'a')
      on conflict (account_id, id) do update set t = now()`,
    ],
    [
      true,
      `insert into spectrum.status_totals values (1, now(), 'a')
      on conflict (k) do update set t = clock_timestamp()`,
    ],
    [
      true,
      `insert into spectrum.dim_users as d values (1, 1, now(), 'a')
      on conflict (account_id, id) do update set s = 'q' where d.t < now()`,
    ],
    [true, `perform id from spectrum.dim_users where id < 5 for update`],
    [false, `perform id from spectrum.dim_users where account_id = 1 for update`],
    [false, `perform id from spectrum.dim_users where account_id = any (array[1]) for update`],
    [
      true,
      `perform id from spectrum.dim_users
      where id in (select id from spectrum.dim_users where account_id = 1) for update`,
    ],
    [false, `perform k from spectrum.status_totals where k < 5 for update`],
    [true, `create unique index on spectrum.dim_users (id)`],
    [false, `create unique index on spectrum.dim_users (account_id, id)`],
  ];
  it.each(measured)('refused %s: %s', (refused, statement) => {
    expect(check(`${tables}\n${fn(`${statement};`)}`).length > 0).toBe(refused);
  });
});

describe('rule 4: no trigger on a distributed table writes a reference table', () => {
  const functions = `
    create or replace function spectrum.bump() returns void language plpgsql as $$
    begin update spectrum.status_totals set events = events + 1 where status = 'done'; end $$;
    create or replace function spectrum.count_user() returns trigger language plpgsql as $$
    begin perform spectrum.bump(); return null; end $$;
    create or replace function spectrum.touch_account() returns trigger language plpgsql as $$
    begin
      update spectrum.dim_accounts set last_seen_at = new.occurred_at where account_id = new.account_id;
      return null;
    end $$;`;

  it('reports a trigger whose function (or a function it calls) writes one', () => {
    const found = check(`${functions}
      create or replace trigger dim_users_counted after insert on spectrum.dim_users
        for each row execute function spectrum.count_user();`);
    expect(found.map((f) => [f.rule, f.table])).toEqual([['trigger-write', 'dim_users']]);
    expect(found[0]!.message).toContain('spectrum.status_totals');
  });

  it('accepts triggers that distribute() drops, on reference tables, or writing distributed tables', () => {
    expect(
      check(`${functions}
      create trigger raw_counted after update on spectrum.raw_events
        for each statement execute function spectrum.count_user();
      create trigger geo_counted after insert on spectrum.dim_geography
        for each row execute function spectrum.count_user();
      create trigger fact_touches after insert on spectrum.fact_events
        for each row execute procedure spectrum.touch_account();`),
    ).toEqual([]);
  });
});

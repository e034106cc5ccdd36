/*
 * Schema evolution, the whole flow on a database holding data, in a throwaway copy of the
 * project: spec edit → npm run build → graphile-migrate commit → migrate while a producer
 * inserts (no table rewrite) → spectrum.reprocess → ticks fill the new columns, exactly once.
 * Then the changes build refuses, and the hand-written path that carries them.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connect, type Sql } from '../scripts/lib/db.ts';
import { migrateDatabase } from '../scripts/lib/migrate.ts';
import { insertEvents } from './helpers/db.ts';
import { copyProject, type ProjectCopy } from './helpers/project-copy.ts';

const SPEC = 'scripts/spec/event-spec.ts';
const NEW_FIELDS = `
    { name: 'amount', path: ['amount'], type: 'numeric', target: 'fact' },
    { name: 'plan', path: ['account', 'plan'], type: 'text', target: 'accounts' },`;
const PROPERTIES = /\n\s*\{ name: 'properties',[^\n]*\},/;

let copy: ProjectCopy;
let url: string;
let sql: Sql;
let receivedFrom: Date;
let baselineSpec: string;
const accounts = Array.from({ length: 12 }, () => randomUUID());
const migrationsFolder = () => join(copy.root, 'migrations');
const migrate = () =>
  migrateDatabase(url, { schedule: false, migrationsFolder: migrationsFolder(), log: () => {} });

/**
 * Events across three months; each account's plan changes over time, and its newest event may
 * not repeat it.
 */
function history(): unknown[] {
  const events: unknown[] = [];
  accounts.forEach((account_id, a) => {
    for (let i = 0; i < 10; i++) {
      const day = new Date(Date.UTC(2026, 8 + (i % 3), 1 + a, 12, i));
      const plan = i < 5 ? 'free' : a % 2 ? 'pro' : 'team';
      events.push({
        event_type: i % 2 ? 'purchase' : 'view',
        account_id,
        user_id: `u${(a * 10 + i) % 7}`,
        timestamp: day.toISOString(),
        ...(i % 4 === 3 ? {} : { amount: (a * 100 + i) / 4 }),
        ...(i >= 7 && a % 3 === 0 ? {} : { account: { plan, seats: a } }),
        geo: { country: 'FR', city: a % 2 ? 'Paris' : 'Lyon' },
      });
    }
  });
  const retried = { ...(events[3] as object), event_id: randomUUID() };
  return [
    ...events,
    retried,
    { ...retried, amount: 99.5 },
    { event_type: 'broken', account_id: 'abc' },
  ];
}

const pending = async () =>
  (
    await sql`
      select count(*)::int as n from spectrum.raw_events where status in ('pending', 'processing')`
  )[0]!.n as number;

beforeAll(async () => {
  copy = copyProject(inject('pg').adminUrl);
  // The deployed state: the committed migrations plus whatever sql/ holds beyond them.
  expect(copy.build().status).toBe(0);
  if (copy.read('migrations/current.sql').trim()) {
    const r = await copy.commit('deployed baseline');
    expect(r.status, r.stderr).toBe(0);
  }
  baselineSpec = copy.read(SPEC);
  url = await copy.createDatabase('evolution_data');
  await migrate();
  sql = connect(url, { max: 4 });
});
afterAll(async () => {
  await sql?.end();
  await copy?.remove();
});

describe('adding a fact column and a dimension attribute to a deployed spec', () => {
  it('starts from a database holding processed events', async () => {
    const [t] = await sql`select clock_timestamp() - interval '1 second' as now`;
    receivedFrom = t!.now as Date;
    await insertEvents(sql, history());
    await sql`call spectrum.process_pending()`;
    const [c] = await sql`
      select count(*) filter (where status = 'done')::int as done,
             count(*) filter (where status = 'failed')::int as failed
        from spectrum.raw_events`;
    expect(c).toEqual({ done: 122, failed: 1 });
    const columns = await sql`
      select column_name from information_schema.columns
       where table_schema = 'spectrum' and column_name in ('amount', 'plan')`;
    expect(columns).toHaveLength(0);
  });

  it('npm run build plans add column if not exists and the new functions, once', async () => {
    const spec = baselineSpec.replace(PROPERTIES, (line) => `${line}${NEW_FIELDS}`);
    expect(spec).not.toBe(baselineSpec);
    copy.write(SPEC, spec);
    const r = copy.build();
    expect(r.status, r.stderr).toBe(0);
    const regenerated = [
      '100_dim_accounts',
      '103_fact_events',
      '130_extracted_event',
      '131_extract_event',
      '140_process_claimed',
    ].map((f) => `${f}.generated.sql`);
    expect(r.stdout).toContain(
      `wrote ${regenerated.map((f) => `sql/${f}`).join(', ')}, migrations/current.sql`,
    );
    const plan = copy.read('migrations/current.sql');
    expect(plan.match(/^-- spectrum:object \S+/gm)).toEqual(
      regenerated.map((f) => `-- spectrum:object ${f}`),
    );
    expect(plan).toContain(
      'alter table spectrum.fact_events add column if not exists amount numeric;',
    );
    expect(plan).toContain('alter table spectrum.dim_accounts add column if not exists plan text;');
    // 130_extracted_event adds the type's attributes in a loop over (name, type) pairs.
    expect(plan).toContain("['amount', 'numeric']");
    expect(plan).toContain('create or replace function spectrum.extract_event(');
    expect(plan).toContain('create or replace function spectrum.process_claimed(');
    // Nothing is dropped, renamed or retyped: only additions and replaced functions.
    const removal = new RegExp(
      String.raw`^\s*(drop |alter table .* (drop|rename|alter column) |` +
        String.raw`alter type .* (drop|rename|alter) attribute)`,
      'im',
    );
    expect(plan).not.toMatch(removal);

    const commit = await copy.commit('amount and plan');
    expect(commit.status, commit.stderr).toBe(0);
    expect(copy.read('migrations/current.sql').trim()).toBe('');
    expect(copy.build().stdout).toContain('nothing to write');
    expect(copy.build('--check').status).toBe(0);
  });

  it('migrates while a producer keeps inserting, without rewriting the tables', async () => {
    const files = async () =>
      sql`select c.oid::regclass::text as rel, c.relfilenode from pg_catalog.pg_class c
           where c.oid = 'spectrum.dim_accounts'::regclass
              or c.oid in (select inhrelid from pg_catalog.pg_inherits
                            where inhparent = 'spectrum.fact_events'::regclass)
           order by 1`;
    const before = await files();
    expect(before.length).toBeGreaterThan(3);
    const producer = connect(url, { max: 1 });
    let producing = true;
    let inserted = 0;
    const loop = (async () => {
      while (producing) {
        const batch = accounts.slice(0, 4).map((account_id) => ({
          event_type: 'live',
          account_id,
          amount: 1.25,
          account: { plan: 'enterprise' },
          timestamp: new Date().toISOString(),
        }));
        inserted += (await insertEvents(producer, batch)).length;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      await new Promise((r) => setTimeout(r, 50));
      await migrate();
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      producing = false;
      await loop;
      await producer.end();
    }
    expect(inserted).toBeGreaterThan(0);
    expect(await files()).toEqual(before);
    const columns = await sql`
      select table_name, column_name, data_type from information_schema.columns
       where table_schema = 'spectrum' and table_name in ('dim_accounts', 'fact_events')
         and column_name in ('amount', 'plan')
       order by 1`;
    expect(columns).toEqual([
      { table_name: 'dim_accounts', column_name: 'plan', data_type: 'text' },
      { table_name: 'fact_events', column_name: 'amount', data_type: 'numeric' },
    ]);
  });

  it('reprocess and the next ticks fill the new columns, exactly once', async () => {
    const [{ total, processed }] = (await sql`
      select count(*)::int as total, count(*) filter (where status <> 'pending')::int as processed
        from spectrum.raw_events`) as unknown as [{ total: number; processed: number }];
    const [{ n }] =
      (await sql`select spectrum.reprocess(received_after => ${receivedFrom}) as n`) as unknown as [
        { n: string },
      ];
    expect(Number(n)).toBe(processed);
    for (let tick = 0; tick < 50 && (await pending()) > 0; tick++)
      await sql`call spectrum.process_pending(p_batch_size => 7)`;
    expect(await pending()).toBe(0);

    const [c] = await sql`
      select count(*)::int as total, count(*) filter (where status = 'failed')::int as failed
        from spectrum.raw_events`;
    expect(c).toEqual({ total, failed: 1 });
    const duplicates =
      await sql`select event_id from spectrum.fact_events group by event_id having count(*) > 1`;
    expect(duplicates).toHaveLength(0);
    const [facts] = await sql`
      select count(*)::int as facts,
             (select count(distinct coalesce((payload->>'event_id')::uuid, id))::int
                from spectrum.raw_events where status = 'done') as events
        from spectrum.fact_events`;
    expect(facts!.facts).toBe(facts!.events);

    // Each fact carries the amount of the raw payload it comes from.
    const wrongAmount = await sql`
      select f.event_id
        from spectrum.fact_events f join spectrum.raw_events r on r.id = f.raw_event_id
       where f.amount is distinct from (r.payload->>'amount')::numeric`;
    expect(wrongAmount).toHaveLength(0);
    const [amounts] = await sql`
      select count(amount)::int as filled, count(*)::int as facts from spectrum.fact_events`;
    expect(amounts!.filled).toBeGreaterThan(amounts!.facts / 2);
    const [retried] =
      await sql`select amount::float8 as amount from spectrum.fact_events where amount = 99.5`;
    expect(retried!.amount).toBe(99.5);

    // An account whose newest event names its plan has that plan.
    const wrongPlan = await sql`
      with newest as (
        select distinct on (f.account_id) f.account_id, r.payload->'account'->>'plan' as plan
          from spectrum.fact_events f join spectrum.raw_events r on r.id = f.raw_event_id
         order by f.account_id, f.occurred_at desc
      )
      select n.account_id, n.plan as want, d.plan as have
        from newest n join spectrum.dim_accounts d using (account_id)
       where n.plan is not null and d.plan is distinct from n.plan`;
    expect(wrongPlan).toEqual([]);
  });

  it('an account whose newest events name no plan gets the newest plan named', async () => {
    // The backfill runs in batches (p_batch_size => 7 above), so the batch holding the newest
    // plan is not the batch holding the account's newest event.
    const wrongPlan = await sql`
      with newest as (
        select distinct on (f.account_id) f.account_id, r.payload->'account'->>'plan' as plan
          from spectrum.fact_events f join spectrum.raw_events r on r.id = f.raw_event_id
         where r.payload->'account'->>'plan' is not null
         order by f.account_id, f.occurred_at desc
      )
      select n.account_id, n.plan as want, d.plan as have
        from newest n join spectrum.dim_accounts d using (account_id)
       where d.plan is distinct from n.plan`;
    expect(wrongPlan).toEqual([]);
    const [plans] = await sql`
      select count(*)::int as accounts, count(plan)::int as with_plan from spectrum.dim_accounts`;
    expect(plans).toEqual({ accounts: accounts.length, with_plan: accounts.length });
  });
});

describe('changes build refuses', () => {
  const withSpec = (edit: (spec: string) => string) => {
    const spec = copy.read(SPEC);
    const next = edit(spec);
    expect(next).not.toBe(spec);
    copy.write(SPEC, next);
    return () => copy.write(SPEC, spec);
  };
  /** Runs build on an edited spec: it must fail, name the change, and write nothing. */
  const refused = (edit: (spec: string) => string, ...args: string[]) => {
    const restore = withSpec(edit);
    try {
      const before = copy.snapshot();
      const r = copy.build(...args);
      expect(r.status).toBe(1);
      expect(copy.snapshot()).toEqual(before);
      return r.stderr;
    } finally {
      restore();
    }
  };
  const amountLine = /\n\s*\{ name: 'amount',[^\n]*\},/;

  it('removing a deployed field: names it and the SQL to write at the top of current.sql', () => {
    const msg = refused((s) => s.replace(amountLine, ''));
    expect(msg).toContain(
      'amount (numeric in spectrum.fact_events) is deployed but gone from the spec',
    );
    expect(msg).toContain('alter table spectrum.fact_events drop column if exists amount;');
    expect(msg).toContain('alter type spectrum.extracted_event drop attribute if exists amount;');
    expect(msg).toContain('top of migrations/current.sql');
    expect(msg).toContain('npm run build -- --accept-spec-changes');
  });

  it('retyping or moving a deployed field', () => {
    const retyped = refused((s) =>
      s.replace(
        "name: 'plan', path: ['account', 'plan'], type: 'text'",
        "name: 'plan', path: ['account', 'plan'], type: 'integer'",
      ),
    );
    expect(retyped).toContain(
      'plan changes from text in spectrum.dim_accounts to integer in spectrum.dim_accounts',
    );
    expect(retyped).toContain(
      'alter table spectrum.dim_accounts alter column plan type integer using plan::integer;',
    );
    expect(retyped).toContain(
      'alter type spectrum.extracted_event alter attribute plan type integer;',
    );
    const moved = refused((s) =>
      s.replace("type: 'numeric', target: 'fact'", "type: 'numeric', target: 'accounts'"),
    );
    expect(moved).toContain(
      'amount changes from numeric in spectrum.fact_events to numeric in spectrum.dim_accounts',
    );
  });

  it('reordering deployed fields (even if accepted) or adding a geography attribute', () => {
    const swap = (s: string) =>
      s
        .replace(amountLine, '')
        .replace(
          /(\n\s*\{ name: 'plan',[^\n]*\},)/,
          `$1\n    { name: 'amount', path: ['amount'], type: 'numeric', target: 'fact' },`,
        );
    expect(refused(swap)).toContain('plan moved within fields');
    expect(refused(swap, '--accept-spec-changes')).toContain('Undo the change');
    const geo = refused((s) =>
      s.replace(
        PROPERTIES,
        (l) =>
          `${l}\n    { name: 'postcode', path: ['geo', 'postcode'], type: 'text', ` +
          "target: 'geography' },",
      ),
    );
    expect(geo).toContain('postcode is a new geography attribute');
  });

  it('--accept-spec-changes before the SQL is written', () => {
    expect(refused((s) => s.replace(amountLine, ''), '--accept-spec-changes')).toContain(
      'no hand-written SQL yet',
    );
  });
});

describe('the hand-written path', () => {
  it('a rename atop current.sql is kept, committed and deployed, keeping the data', async () => {
    const plansBefore = await sql`select account_id, plan from spectrum.dim_accounts order by 1`;
    const restore = copy.read(SPEC);
    copy.write(SPEC, restore.replace("{ name: 'plan',", "{ name: 'tier',"));
    const refusal = copy.build();
    expect(refusal.status).toBe(1);
    expect(refusal.stderr).toContain('if tier is plan renamed');

    const hand = `-- plan is called tier from now on
do $$
begin
  if exists (select from pg_catalog.pg_attribute
              where attrelid = 'spectrum.dim_accounts'::regclass and attname = 'plan') then
    alter table spectrum.dim_accounts rename column plan to tier;
    alter type spectrum.extracted_event rename attribute plan to tier;
  end if;
end
$$;`;
    copy.write('migrations/current.sql', `${hand}\n`);
    const accepted = copy.build('--accept-spec-changes');
    expect(accepted.status, accepted.stderr).toBe(0);
    expect(accepted.stdout).toContain('spec changes accepted (plan)');
    const plan = copy.read('migrations/current.sql');
    expect(plan.indexOf(hand)).toBeGreaterThan(0);
    expect(plan.indexOf(hand)).toBeLessThan(plan.indexOf('-- spectrum:object'));
    // Accepted once: a plain build keeps the plan as it is.
    const again = copy.build();
    expect(again.status, again.stderr).toBe(0);
    expect(copy.read('migrations/current.sql')).toBe(plan);

    const commit = await copy.commit('plan is tier');
    expect(commit.status, commit.stderr).toBe(0);
    expect(copy.build('--check').status).toBe(0);
    await migrate();
    expect(
      await sql`select account_id, tier as plan from spectrum.dim_accounts order by 1`,
    ).toEqual(plansBefore);
    await insertEvents(sql, [
      { event_type: 'upgrade', account_id: accounts[0], account: { plan: 'gold' } },
    ]);
    await sql`call spectrum.process_pending()`;
    const [d] =
      await sql`select tier from spectrum.dim_accounts where account_id = ${accounts[0]!}`;
    expect(d!.tier).toBe('gold');
  });

  it('a removal forgetting the type is stopped by the migration (55000), then fixed', async () => {
    const spec = copy.read(SPEC);
    copy.write(SPEC, spec.replace(/\n\s*\{ name: 'amount',[^\n]*\},/, ''));
    copy.write(
      'migrations/current.sql',
      'alter table spectrum.fact_events drop column if exists amount;\n',
    );
    expect(copy.build('--accept-spec-changes').status).toBe(0);
    const failed = await copy.commit('drop amount');
    expect(failed.status).not.toBe(0);
    expect(`${failed.stdout}${failed.stderr}`).toMatch(/Code:\s+55000/);
    expect(copy.read('migrations/current.sql')).toContain('drop column if exists amount');

    const plan = copy.read('migrations/current.sql');
    copy.write(
      'migrations/current.sql',
      plan.replace(
        'alter table spectrum.fact_events drop column if exists amount;',
        'alter table spectrum.fact_events drop column if exists amount;\n' +
          'alter type spectrum.extracted_event drop attribute if exists amount;',
      ),
    );
    expect(copy.build().status).toBe(0);
    const commit = await copy.commit('drop amount');
    expect(commit.status, commit.stderr).toBe(0);
    await migrate();
    const columns = await sql`
      select column_name from information_schema.columns
       where table_schema = 'spectrum' and column_name = 'amount'`;
    expect(columns).toHaveLength(0);
    await insertEvents(sql, [{ event_type: 'after_drop', account_id: accounts[1], amount: 3 }]);
    await sql`call spectrum.process_pending()`;
    const [f] = await sql`
      select count(*)::int as n from spectrum.fact_events where event_type = 'after_drop'`;
    expect(f!.n).toBe(1);
  });
});

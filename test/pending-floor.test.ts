/*
 * The pending floor (sql/022_pending_floor.sql): raw_events has no index on status, so marking a
 * row done touches no index but the primary key, and unfinished rows are found from the floor up. These tests hold the
 * floor to its promise: it follows the head, never passes a row that a transaction still open can
 * commit, comes down for a row sent back to pending, and recount_status repairs what it cannot see.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import { counterIsExact, fresh, statusIsExact, valid } from './helpers/fixtures.ts';

let db: TestDb;
beforeAll(async () => {
  db = await testDatabase('pending_floor');
});
afterAll(async () => db?.drop());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const floor = async () => {
  const [f] = await db.sql<{ floor: string }[]>`
    select floor::text from spectrum.pending_floor where bucket = 0`;
  return f!.floor;
};
const statusOf = async (id: string) => {
  const [r] = await db.sql<{ status: string }[]>`
    select status from spectrum.raw_events where id = ${id}`;
  return r!.status;
};
// A candidate is 1 second older than when it is taken: after a pause, two calls move the floor
// past every row that was finished before the pause.
const settle = async () => {
  await sleep(1_100);
  await runPipeline(db.sql);
};

describe('the pending floor', () => {
  beforeEach(() => fresh(db.sql));

  it('keeps status, processed_at and attempts out of every index, key or predicate', async () => {
    // Marking a row done then adds an entry to the primary key only (sql/020_raw_events.sql).
    const indexes = await db.sql<{ name: string; definition: string }[]>`
      select c.relname as name, pg_get_indexdef(i.indexrelid) as definition
        from pg_index i join pg_class c on c.oid = i.indexrelid
       where i.indrelid = 'spectrum.raw_events'::regclass`;
    expect(indexes.map((i) => i.name).sort()).toEqual(['raw_events_errors_idx', 'raw_events_pkey']);
    for (const i of indexes) expect(i.definition).not.toMatch(/status|processed_at|attempts/);
    // No fillfactor: inserts fill every page (sql/020_raw_events.sql says why).
    const [table] = await db.sql<{ options: string[] | null }[]>`
      select reloptions as options from pg_class where oid = 'spectrum.raw_events'::regclass`;
    expect((table!.options ?? []).filter((o) => o.startsWith('fillfactor'))).toEqual([]);
  });

  it('follows the head: after a pause, the floor is above every finished row', async () => {
    const ids = await insertEvents(db.sql, [...valid(30), { account_id: 'not a uuid' }]);
    await runPipeline(db.sql);
    await settle();
    const f = await floor();
    for (const id of ids) expect(id < f).toBe(true);
    // New rows are above it, and counted by pipeline_status.
    await insertEvents(db.sql, valid(3));
    const [pending] = await db.sql<{ events: number }[]>`
      select events::int from spectrum.pipeline_status where status = 'pending'`;
    expect(pending!.events).toBe(3);
    await statusIsExact(db.sql);
  });

  it('never passes a row that a transaction open across ticks commits later', async () => {
    const late = await db.sql.reserve();
    try {
      await late`begin`;
      const [row] = await late<{ id: string }[]>`
        insert into spectrum.raw_events (payload)
        values (${db.sql.json(valid(1)[0] as never)}) returning id`;
      // Ticks go on meanwhile, with work of their own, well past the late row's instant.
      for (let i = 0; i < 3; i++) {
        await insertEvents(db.sql, valid(5));
        await settle();
      }
      expect((await floor()) <= row!.id).toBe(true);
      await late`commit`;
      await runPipeline(db.sql);
      expect(await statusOf(row!.id)).toBe('done');
    } finally {
      late.release();
    }
    await statusIsExact(db.sql);
  });

  it('comes down for a row sent back to pending or processing, which is then claimed', async () => {
    const facts = async () => {
      const [f] = await db.sql<
        { n: number }[]
      >`select count(*)::int as n from spectrum.fact_events`;
      return f!.n;
    };
    const ids = await insertEvents(db.sql, valid(10));
    await runPipeline(db.sql);
    await settle();
    const factsBefore = await facts();
    expect(ids[0]! < (await floor())).toBe(true);
    await db.sql`update spectrum.raw_events set status = 'pending' where id = ${ids[2]!}`;
    expect(await floor()).toBe(ids[2]);
    await db.sql`update spectrum.raw_events set status = 'processing' where id = ${ids[0]!}`;
    expect(await floor()).toBe(ids[0]);
    const [unfinished] = await db.sql<{ n: number }[]>`
      select sum(events)::int as n from spectrum.pipeline_status
       where status in ('pending', 'processing')`;
    expect(unfinished!.n).toBe(2);
    await runPipeline(db.sql);
    expect(await statusOf(ids[0]!)).toBe('done');
    expect(await statusOf(ids[2]!)).toBe('done');
    expect(await counterIsExact(db.sql)).toBe(10);
    // Processed again, each still has one fact.
    expect(await facts()).toBe(factsBefore);
  });

  it('sets a row left processing back to pending at the start of every call, batches or not', async () => {
    const ids = await insertEvents(db.sql, valid(4));
    await runPipeline(db.sql);
    await settle();
    // One left processing from done (below the floor until the trigger lowers it), one from pending.
    await db.sql`update spectrum.raw_events set status = 'processing' where id = ${ids[1]!}`;
    const [fresh] = await insertEvents(db.sql, valid(1));
    await db.sql`update spectrum.raw_events set status = 'processing' where id = ${fresh!}`;
    await runPipeline(db.sql, 'p_max_batches => 0');
    expect(await statusOf(ids[1]!)).toBe('pending');
    expect(await statusOf(fresh!)).toBe('pending');
    await runPipeline(db.sql);
    expect(await statusOf(ids[1]!)).toBe('done');
    expect(await statusOf(fresh!)).toBe('done');
    await statusIsExact(db.sql);
  });

  it('is lowered by recount_status for a row inserted with an id older than the floor', async () => {
    await insertEvents(db.sql, valid(3));
    await runPipeline(db.sql);
    await settle();
    const [old] = await db.sql<{ id: string }[]>`
      insert into spectrum.raw_events (id, payload)
      values (spectrum.uuid_v7(now() - interval '1 day'), ${db.sql.json(valid(1)[0] as never)})
      returning id`;
    expect(old!.id < (await floor())).toBe(true);
    await db.sql`select spectrum.recount_status()`;
    expect(await floor()).toBe(old!.id);
    await runPipeline(db.sql);
    expect(await statusOf(old!.id)).toBe('done');
  });

  it('refuses a failed row without its reason (raw_events_failed_has_reason)', async () => {
    const [id] = await insertEvents(db.sql, valid(1));
    await expect(
      db.sql`update spectrum.raw_events set status = 'failed' where id = ${id!}`,
    ).rejects.toMatchObject({ code: '23514', constraint_name: 'raw_events_failed_has_reason' });
    await db.sql`
      update spectrum.raw_events set status = 'failed', error_msg = 'failed by hand' where id = ${id!}`;
    const [reasons] = await db.sql<{ n: number }[]>`
      select sum(events)::int as n from spectrum.failure_reasons`;
    expect(reasons!.n).toBe(1);
  });
});

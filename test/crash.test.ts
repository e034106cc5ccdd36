/*
 * The backend running process_pending is killed with SIGKILL mid-run (PostgreSQL then resets
 * every connection of the cluster, so this file has a cluster of its own). After a rerun:
 * nothing lost, nothing left processing, exactly one fact per event, counters exact.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, type Sql } from '../scripts/lib/db.ts';
import { generateEvents } from '../scripts/lib/events.ts';
import { insertEvents } from './helpers/db.ts';
import { migrateForTests } from './helpers/migrate.ts';
import { privateCluster } from './setup/server.ts';

let cluster: Awaited<ReturnType<typeof privateCluster>>;
let url: string;
beforeAll(async () => {
  cluster = await privateCluster();
  const admin = connect(cluster.url('postgres'), { max: 1 });
  await admin`create database crash`;
  await admin.end();
  url = cluster.url('crash');
  await migrateForTests(url);
});
afterAll(() => cluster?.stop());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(ready: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2_000; i++) {
    if (await ready()) return;
    await sleep(5);
  }
  throw new Error('process_pending did not record its run within 10 s');
}

async function reconnect(): Promise<Sql> {
  for (let i = 0; i < 100; i++) {
    const sql = connect(url, { max: 2 });
    try {
      await sql`select 1`;
      return sql;
    } catch {
      await sql.end({ timeout: 0 }).catch(() => {});
      await sleep(200);
    }
  }
  throw new Error('the server did not come back after the crash');
}

it(
  'loses nothing and duplicates nothing ' + 'when the processing backend is killed at any instant',
  async () => {
    let sql = connect(url, { max: 2 });
    let seed = 1;
    let kills = 0;
    for (const instant of [20, 150, 400, 900]) {
      const batch = [
        ...generateEvents({
          count: 8_000,
          seed: seed++,
          accounts: 50,
          malformed: 0.01,
          retries: 0.03,
        }),
      ];
      await insertEvents(sql, batch);
      // Some already-processed events are reprocessed in the same run.
      await sql`
        update spectrum.raw_events set status = 'pending'
         where id in (select id from spectrum.raw_events where status = 'done' limit 2000)`;
      const victim = connect(url, { max: 1 });
      const pid = (await victim<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
      const last = (
        await sql<
          { last: number }[]
        >`select coalesce(max(run_id), 0)::int as last from spectrum.pipeline_runs`
      )[0]!.last;
      const running = victim`call spectrum.process_pending(p_batch_size => 700)`.then(
        () => 'finished',
        () => 'killed',
      );
      // The instant counts from the call's first commit (its pipeline_runs row): a kill before
      // it leaves no run behind, which is not the mid-run crash this test is about.
      await until(
        async () =>
          (await sql`select 1 from spectrum.pipeline_runs where run_id > ${last}`).length > 0,
      );
      await sleep(instant);
      process.kill(pid, 'SIGKILL');
      const outcome = await running;
      await victim.end({ timeout: 0 }).catch(() => {});
      await sql.end({ timeout: 0 }).catch(() => {});
      sql = await reconnect();
      // The call's one run row survives the crash. A call that returned has finished it; a
      // killed call has not, unless the kill landed between its last commit and its reply.
      const run = await sql<{ finished: boolean }[]>`
        select finished_at is not null as finished
          from spectrum.pipeline_runs where run_id > ${last}`;
      expect(run).toHaveLength(1);
      if (outcome === 'finished') expect(run[0]!.finished).toBe(true);
      else if (!run[0]!.finished) kills++;
    }
    // At least one kill landed mid-run, with batches committed and others in flight.
    expect(kills).toBeGreaterThan(0);
    await sql`call spectrum.process_pending()`;

    const [c] = await sql`
      select count(*) filter (where status = 'processing')::int as processing,
             count(*) filter (where status = 'pending')::int as pending,
             count(*) filter (where status = 'done')::int as done,
             count(*)::int as total
        from spectrum.raw_events`;
    expect(c!.total).toBe(4 * 8_000);
    expect(c!.processing).toBe(0);
    expect(c!.pending).toBe(0);
    const [status] =
      await sql`select events::int from spectrum.pipeline_status where status = 'done'`;
    expect(status!.events).toBe(c!.done);

    const bad = await sql`
      with newest as (
        select distinct on (coalesce((payload->>'event_id')::uuid, id))
               coalesce((payload->>'event_id')::uuid, id) as event_id, id
          from spectrum.raw_events where status = 'done'
         order by coalesce((payload->>'event_id')::uuid, id), received_at desc, id desc
      )
      select n.event_id from newest n left join spectrum.fact_events f on f.event_id = n.event_id
       group by n.event_id, n.id having count(f.*) <> 1 or min(f.raw_event_id::text) <> n.id::text`;
    expect(bad).toEqual([]);
    const [f] = await sql`
      select count(*)::int as n, count(distinct event_id)::int as d from spectrum.fact_events`;
    expect(f!.n).toBe(f!.d);
    // One run row per call (four killed or not, one final), whatever the crashes did.
    const [runs] = await sql`select count(*)::int as n from spectrum.pipeline_runs`;
    expect(runs!.n).toBe(5);
    const [last] = await sql`
      select finished_at is not null as finished, stopped_because
        from spectrum.pipeline_runs order by run_id desc limit 1`;
    expect(last).toEqual({ finished: true, stopped_because: 'no pending rows' });
    await sql.end();
  },
);

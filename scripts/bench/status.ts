/*
 * pipeline_status latency on a big raw_events: rows made with generate_series (no COPY from
 * the client: millions of rows in a minute or two), mostly done, the rest pending or failed,
 * vacuumed as autovacuum would have, status_totals brought in line, then the view queried
 * several times: the median client round trip is the figure.
 */
import { connect } from '../lib/db.ts';
import { median } from './measure.ts';
import { migratedDatabase, dropDatabase, type BenchServer } from './server.ts';

export interface StatusResult {
  rows: number;
  pending: number;
  failed: number;
  runsMs: number[];
  medianMs: number;
  /** Execution Time of EXPLAIN ANALYZE, server side, for the record. */
  serverMs: number;
  loadSeconds: number;
}

const SLICE = 1_000_000;

export async function measureStatus(
  server: BenchServer,
  rows: number,
  log: (l: string) => void,
): Promise<StatusResult> {
  const database = 'bench_status';
  const url = await migratedDatabase(server, database);
  const sql = connect(url, { max: 1 });
  const pending = Math.min(100_000, Math.floor(rows * 0.01));
  const failed = Math.floor(rows * 0.001);
  const done = rows - pending - failed;
  try {
    const started = performance.now();
    // Oldest first: done, then failed, then the pending backlog; one second per 100 rows.
    for (let from = 1; from <= rows; from += SLICE) {
      const to = Math.min(rows, from + SLICE - 1);
      await sql`
        insert into spectrum.raw_events (id, payload, received_at, status, processed_at, error_msg,
            attempts)
        select spectrum.uuid_v7(at), jsonb_build_object('event_type', 'event_type_' || g % 20,
                 'account_id', md5((g % 2000)::text)::uuid, 'properties',
                 jsonb_build_object('p0', g)),
               at,
               case when g <= ${done} then 'done' when g <= ${done + failed} then 'failed'
                    else 'pending' end,
               case when g <= ${done + failed} then at + interval '1 minute' end,
               case when g > ${done} and g <= ${done + failed}
                    then 'account_id: "x" is not a uuid' end,
               case when g <= ${done + failed} then 1 else 0 end
          from generate_series(${from}::bigint, ${to}::bigint) g,
               lateral (select now() - make_interval(secs => (${rows} - g) / 100.0) as at) t`;
      log(
        `  pipeline_status: ${to.toLocaleString('en-US')} of ${rows.toLocaleString('en-US')} ` +
          `rows loaded`,
      );
    }
    const [recount] =
      await sql`select to_regprocedure('spectrum.recount_status()') is not null as have`;
    if (recount!.have) await sql`select spectrum.recount_status()`;
    else await sql`update spectrum.status_totals set events = ${done} where status = 'done'`;
    await sql`vacuum analyze spectrum.raw_events`;
    const loadSeconds = (performance.now() - started) / 1000;

    const view = await sql<
      { status: string; events: string }[]
    >`select status, events from spectrum.pipeline_status`;
    const counts = Object.fromEntries(view.map((r) => [r.status, Number(r.events)]));
    if (counts.done !== done || counts.pending !== pending || counts.failed !== failed)
      throw new Error(
        `pipeline_status counts ${JSON.stringify(counts)} differ from the rows loaded (done ` +
          `${done}, pending ${pending}, failed ${failed})`,
      );

    const runsMs: number[] = [];
    for (let i = 0; i < 11; i++) {
      const t = performance.now();
      await sql`select * from spectrum.pipeline_status`;
      runsMs.push(performance.now() - t);
    }
    const plan = await sql.unsafe(
      `explain (analyze, format json) select * from spectrum.pipeline_status`,
    );
    const serverMs = Number(
      (plan[0] as Record<string, Array<{ 'Execution Time': number }>>)['QUERY PLAN']![0]![
        'Execution Time'
      ],
    );
    return { rows, pending, failed, runsMs, medianMs: median(runsMs), serverMs, loadSeconds };
  } finally {
    await sql.end();
    await dropDatabase(server, database);
  }
}

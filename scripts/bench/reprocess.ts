/*
 * npm run bench:reprocess [-- --events N] [-- --chunk-size N]: a chunked reprocess of every
 * processed event (CALL spectrum.reprocess_in_chunks) while producers insert and pipeline ticks
 * run, in the benchmark's throwaway cluster. Prints how long it took, the longest transaction
 * of each session (sampled from pg_stat_activity), the growth of raw_events, and checks that
 * the facts are still exactly once and the status counters exact once the ticks caught up.
 */
import { connect, type Sql } from '../lib/db.ts';
import { copyPayloads, makeDataset } from './load.ts';
import { loadNow } from './report.ts';
import { migratedDatabase, startBenchServer } from './server.ts';

const log = (line: string) => console.log(line);

const USAGE = `usage: npm run bench:reprocess -- [--events N] [--chunk-size N]
  --events N       events loaded, processed, then reprocessed (default 1000000)
  --chunk-size N   rows per committed chunk of reprocess_in_chunks (default 10000)`;

/** Exits 0 after the usage for --help, 2 with what was wrong for any other argument. */
function checkArguments(argv: string[]) {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    process.exit(0);
  }
  for (let i = 0; i < argv.length; i += 2)
    if (!['--events', '--chunk-size'].includes(argv[i]!)) {
      console.error(
        `npm run bench:reprocess: unknown argument ${JSON.stringify(argv[i])}: the options are ` +
          `--events and --chunk-size\n${USAGE}`,
      );
      process.exit(2);
    }
}

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) {
    console.error(
      `npm run bench:reprocess: --${name} takes a positive whole number, got ` +
        `${JSON.stringify(process.argv[i + 1] ?? '')}: e.g. --${name} ${fallback}\n${USAGE}`,
    );
    process.exit(2);
  }
  return n;
}

checkArguments(process.argv.slice(2));
const events = option('events', 1_000_000);
const chunkSize = option('chunk-size', 10_000);
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seconds = (from: number) => (performance.now() - from) / 1000;

const as = (url: string, name: string, onnotice?: (m: string) => void) =>
  connect(url, {
    max: 1,
    connection: { application_name: name },
    onnotice: onnotice ? (n) => onnotice(n.message ?? '') : () => {},
  });

async function rawSize(sql: Sql) {
  const [r] = await sql`
    select pg_total_relation_size('spectrum.raw_events')::float8 as bytes,
           (select count(*) from spectrum.raw_events)::int as rows`;
  return { bytes: r!.bytes as number, rows: r!.rows as number };
}

const server = await startBenchServer(log);
try {
  // A DBA's server vacuums: the dead versions a reprocess leaves are what raw_events' growth is.
  await server.admin`alter system set autovacuum = on`;
  await server.admin`select pg_reload_conf()`;
  const url = await migratedDatabase(server, 'reprocess');
  const sql = connect(url, { max: 1 });
  const loadStart = loadNow();
  log(`loading and processing ${int(events)} events (1% malformed, 1% retries)`);
  await sql`select spectrum.ensure_fact_partitions(
              array[date_trunc('month', now() - interval '8 days'), date_trunc('month', now())])`;
  await copyPayloads(sql, 'spectrum.raw_events', makeDataset('reprocess', events, 0.01));
  await sql`vacuum analyze spectrum.raw_events`;
  await sql`call spectrum.process_pending(p_time_budget => '2 hours')`;
  await sql`vacuum analyze spectrum.raw_events`;
  const before = await rawSize(sql);
  const [loaded] = await sql`select now() as at`;

  // Longest transaction per session, sampled every 100 ms.
  const longest = new Map<string, number>();
  let sampling = true;
  let firstChunkAt = 0;
  const sampler = (async () => {
    const s = as(url, 'sampler');
    while (sampling) {
      const rows = await s`
        select application_name as app, extract(epoch from now() - xact_start)::float8 as age
          from pg_stat_activity
         where datname = current_database() and xact_start is not null
           and application_name in ('reprocess', 'tick', 'producer')`;
      for (const r of rows) {
        let app = r.app as string;
        if (app === 'reprocess' && firstChunkAt === 0) app = 'reprocess (start: the count)';
        longest.set(app, Math.max(longest.get(app) ?? 0, r.age as number));
      }
      await sleep(100);
    }
    await s.end();
  })();

  let reprocessing = true;
  let produced = 0;
  const producer = (async () => {
    const p = as(url, 'producer');
    for (let round = 0; reprocessing; round++) {
      const batch = makeDataset('live', 500, 0.01, 7000 + round);
      await copyPayloads(p, 'spectrum.raw_events', batch);
      produced += batch.events;
      await sleep(250);
    }
    await p.end();
  })();
  let ticks = 0;
  const ticker = (async () => {
    const t = as(url, 'tick');
    while (reprocessing) {
      await t`call spectrum.process_pending(p_time_budget => '30 seconds')`;
      ticks++;
      await sleep(1000);
    }
    await t.end();
  })();

  const notices: string[] = [];
  const r = as(url, 'reprocess', (m) => {
    if (/ chunk \d+: /.test(m) && firstChunkAt === 0) firstChunkAt = performance.now();
    notices.push(m);
  });
  const started = performance.now();
  const [run] = await r`
    call spectrum.reprocess_in_chunks(received_before => now(), chunk_size => ${chunkSize})`;
  const reprocessSeconds = seconds(started);
  const countSeconds = (firstChunkAt - started) / 1000;
  await r.end();
  reprocessing = false;
  await Promise.all([producer, ticker]);
  // The ticks catch up: everything pending is processed.
  const catchUp = performance.now();
  await sql`call spectrum.process_pending(p_time_budget => '2 hours')`;
  const catchUpSeconds = seconds(catchUp);
  sampling = false;
  await sampler;
  await sql`vacuum spectrum.raw_events`;
  const after = await rawSize(sql);

  const [p] = await sql`select * from spectrum.reprocess_progress where run_id = ${run!.run_id}`;
  const [again] = await sql`
    select count(*) filter (where processed_at > ${p!.started_at})::int as again,
           count(*)::int as rows
      from spectrum.raw_events where received_at <= ${loaded!.at}`;
  const [facts] = await sql`
    select (select count(*) from spectrum.fact_events)::int as facts,
           (select count(distinct event_id) from spectrum.fact_events)::int as distinct_events,
           (select count(distinct coalesce(spectrum.try_uuid(payload ->> 'event_id'), id))
              from spectrum.raw_events where status = 'done')::int as done_events`;
  const [counters] = await sql`
    select bool_and(t.events = (select count(*) from spectrum.raw_events e
                                 where e.status = t.status)) as exact
      from spectrum.status_totals t where t.status in ('done', 'failed')`;

  log(`\n## reprocess of ${int(events)} events, chunks of ${int(chunkSize)} rows`);
  log(`load average (1, 5, 15 min) at start ${loadStart}, at end ${loadNow()}`);
  log(
    `rows re-queued: ${int(Number(p!.requeued))} of ${int(Number(p!.matched))} matched, ` +
      `in ${p!.chunks} chunks (${p!.lock_timeouts} lock timeouts)`,
  );
  log(
    `CALL spectrum.reprocess_in_chunks: ${reprocessSeconds.toFixed(1)} s (the count before ` +
      `the first chunk: ${countSeconds.toFixed(1)} s), ` +
      `${int(Number(p!.requeued) / reprocessSeconds)} rows/s`,
  );
  log(`ticks meanwhile: ${ticks}; producers inserted ${int(produced)} events meanwhile`);
  log(`catch-up after the reprocess (the rest of the backlog): ${catchUpSeconds.toFixed(1)} s`);
  for (const [app, age] of [...longest].sort()) {
    log(`longest transaction, ${app}: ${age.toFixed(2)} s`);
  }
  log(
    `raw_events: ${mb(before.bytes)} (${int(before.rows)} rows) before, ` +
      `${mb(after.bytes)} (${int(after.rows)} rows) after: ` +
      `+${(((after.bytes - before.bytes) / before.bytes) * 100).toFixed(0)}%`,
  );
  log(`rows of before the run processed again: ${int(again!.again)} of ${int(again!.rows)}`);
  log(
    `facts: ${int(facts!.facts)}, distinct events ${int(facts!.distinct_events)}, ` +
      `distinct done events ${int(facts!.done_events)}: ` +
      (facts!.facts === facts!.distinct_events && facts!.facts === facts!.done_events
        ? 'exactly once'
        : 'NOT EXACTLY ONCE'),
  );
  log(`status counters: ${counters!.exact ? 'exact' : 'NOT EXACT'}`);
  log(`last NOTICE: ${notices.at(-1)}`);
  await sql.end();
} finally {
  server.stop();
}

/*
 * npm run bench -- --citus: scaling out, measured. The same events are processed by plain
 * PostgreSQL (one server, one CALL) and by Citus with 1 and then 2 workers, each worker pinned to
 * a CPU of its own (taskset) and running process_pending for the buckets of its own shards
 * (docs/citus.md); the coordinator only routes. A fresh cluster per run, runs interleaved over
 * rounds, the median shown; every run must leave nothing pending and one fact per valid event.
 * Writes bench-results/citus.md (or --out).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { citusCluster, citusInstalled } from '../lib/citus.ts';
import { connect, type Sql } from '../lib/db.ts';
import { migrateDatabase } from '../lib/migrate.ts';
import { projectRoot } from '../lib/paths.ts';
import type { BenchArgs } from './args.ts';
import { copyPayloads, makeDataset, type Dataset } from './load.ts';
import { countOutcome, median, PIPELINE_TABLES, type Outcome } from './measure.ts';
import { loadNow, machine } from './report.ts';
import { migratedDatabase, startBenchServer } from './server.ts';

/** The benchmark server's settings that matter here, on every Citus node too. */
const NODE_CONF = [
  `shared_buffers = '1GB'`,
  `work_mem = '64MB'`,
  `max_wal_size = '16GB'`,
  `checkpoint_timeout = '1h'`,
  `autovacuum = off`,
];

interface CitusRun {
  setup: string;
  seconds: number;
  outcome: Outcome;
}

/** Partitions ahead, the events loaded, statistics: what every setup gets before the clock. */
async function prepare(sql: Sql, data: Dataset) {
  await sql`select spectrum.ensure_fact_partitions(
              array[date_trunc('month', now() - interval '8 days'), date_trunc('month', now())])`;
  await copyPayloads(sql, 'spectrum.raw_events', data);
  await sql`vacuum analyze spectrum.raw_events`;
}

/**
 * Calls process_pending on each of `urls` at once, again while rows are left (a call that lost a
 * distributed deadlock stops as contention, its rows pending); the wall time of it all.
 */
async function processOn(urls: string[], batchSize: number): Promise<number> {
  const sessions = urls.map((u) => connect(u, { max: 1 }));
  try {
    const started = performance.now();
    for (let round = 0; ; round++) {
      await Promise.all(
        sessions.map((s) =>
          s
            .unsafe(
              `call spectrum.process_pending(p_batch_size => ${batchSize}, ` +
                `p_time_budget => '1 hour')`,
            )
            .catch((e: { message?: string; where?: string }) => {
              throw new Error(`process_pending: ${e.message}${e.where ? `\n${e.where}` : ''}`);
            }),
        ),
      );
      const [left] = await sessions[0]!<{ n: number }[]>`
        select count(*)::int as n from spectrum.raw_events where status = 'pending'`;
      if (left!.n === 0) break;
      if (round === 20) throw new Error(`${left!.n} events still pending after 20 rounds of calls`);
    }
    return (performance.now() - started) / 1000;
  } finally {
    await Promise.all(sessions.map((s) => s.end()));
  }
}

async function plainRun(data: Dataset, batchSize: number, log: (l: string) => void) {
  const server = await startBenchServer(() => {});
  try {
    const url = await migratedDatabase(server, 'bench_plain');
    const sql = connect(url, { max: 1 });
    try {
      await prepare(sql, data);
      const seconds = await processOn([url], batchSize);
      const outcome = await countOutcome(sql, PIPELINE_TABLES);
      log(
        `  plain PostgreSQL: ${data.events.toLocaleString('en-US')} events in ${seconds.toFixed(2)} s`,
      );
      return { setup: 'plain PostgreSQL 15, one server, one CALL', seconds, outcome };
    } finally {
      await sql.end();
    }
  } finally {
    server.stop();
  }
}

async function citusRun(
  workers: number,
  data: Dataset,
  batchSize: number,
  log: (l: string) => void,
): Promise<CitusRun> {
  const cluster = await citusCluster({
    workers,
    cronDatabase: 'bench',
    prefix: 'spectrum-bench-citus-',
    pinWorkers: true,
    extraConf: NODE_CONF,
  });
  const stop = () => cluster.remove();
  process.once('exit', stop);
  try {
    const url = await cluster.createDatabase('bench');
    // Distributes by itself (the citus extension is there).
    await migrateDatabase(url, { schedule: false, log: () => {} });
    const sql = connect(url, { max: 1 });
    try {
      await prepare(sql, data);
      const seconds = await processOn(
        cluster.workers.map((w) => w.url('bench')),
        batchSize,
      );
      const outcome = await countOutcome(sql, PIPELINE_TABLES);
      log(
        `  Citus, ${workers} worker${workers > 1 ? 's' : ''}: ` +
          `${data.events.toLocaleString('en-US')} events in ${seconds.toFixed(2)} s`,
      );
      return {
        setup: `Citus 13, coordinator + ${workers} worker${workers > 1 ? 's' : ''}, a job per worker`,
        seconds,
        outcome,
      };
    } finally {
      await sql.end();
    }
  } finally {
    stop();
    process.removeListener('exit', stop);
  }
}

export async function benchCitus(args: BenchArgs, log: (l: string) => void): Promise<number> {
  if (!citusInstalled()) {
    console.error(
      'npm run bench -- --citus: Citus is not installed for PostgreSQL 15 (citus.so and ' +
        'citus.control): install Citus 13.2, as docs/citus.md says, then run it again',
    );
    return 1;
  }
  const started = new Date();
  const loadStart = loadNow();
  const data = makeDataset('1% malformed', args.events, 0.01);
  log(
    `npm run bench -- --citus: ${args.events.toLocaleString('en-US')} events, ${args.rounds} ` +
      `round(s); workers pinned to their own CPU`,
  );
  const runs = new Map<string, CitusRun[]>();
  const add = (r: CitusRun) => runs.set(r.setup, [...(runs.get(r.setup) ?? []), r]);
  for (let round = 0; round < args.rounds; round++) {
    log(`round ${round + 1}`);
    const order = round % 2 ? [2, 1] : [1, 2];
    add(await plainRun(data, args.batchSize, log));
    for (const n of order) add(await citusRun(n, data, args.batchSize, log));
  }

  // Every setup must have done the same work, all of it.
  const all = [...runs.values()].flat();
  const first = all[0]!.outcome;
  for (const r of all) {
    if (r.outcome.pending !== 0)
      throw new Error(`${r.setup}: ${r.outcome.pending} events left pending`);
    for (const k of ['done', 'failed', 'facts', 'accounts', 'users', 'places'] as const)
      if (r.outcome[k] !== first[k])
        throw new Error(
          `${r.setup} did other work than ${all[0]!.setup}: ${k} ${r.outcome[k]} against ${first[k]}`,
        );
  }

  const m = machine('PostgreSQL 15 with Citus 13', loadStart);
  const med = (setup: string) => median(runs.get(setup)!.map((r) => r.seconds));
  const setups = [...runs.keys()];
  const [plain, one, two] = setups.map(med) as [number, number, number];
  const scaling = one / two;
  const lines = [
    '# Scaling out with Citus',
    '',
    `\`npm run bench -- --citus --events ${args.events} --rounds ${args.rounds}\` on ` +
      `${started.toISOString().replace(/\.\d+Z$/, 'Z')}.`,
    `Commit ${m.commit}. Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ` +
      `${m.postgres}; load average ${m.loadStart} at the start, ${m.loadEnd} at the end.`,
    '',
    '| setup | events/s | seconds (runs) |',
    '|---|---|---|',
    ...setups.map((s) => {
      const xs = runs.get(s)!.map((r) => r.seconds);
      return (
        `| ${s} | ${Math.round(args.events / med(s)).toLocaleString('en-US')} | ` +
        `${med(s).toFixed(2)} (${xs.map((x) => x.toFixed(2)).join(', ')}) |`
      );
    }),
    '',
    '| measure | result | |',
    '|---|---|---|',
    `| 2 workers against 1 (target at least 1.6x) | ${scaling.toFixed(2)}x | ` +
      `${scaling >= 1.6 ? 'PASS' : 'MISS'} |`,
    `| 1 Citus worker against plain PostgreSQL | ${(plain / one).toFixed(2)}x | for information |`,
    `| 2 Citus workers against plain PostgreSQL | ${(plain / two).toFixed(2)}x | for information |`,
    '',
    `- Every run: ${first.done.toLocaleString('en-US')} done, ` +
      `${first.failed.toLocaleString('en-US')} failed, ${first.facts.toLocaleString('en-US')} ` +
      'facts, nothing pending; the same in every setup.',
    '- Each Citus worker is pinned to a CPU of its own and the coordinator to the last one ' +
      '(on 2 CPUs it shares one with a worker); each worker runs one `process_pending` for the ' +
      'buckets of its own shards. Batch size ' +
      `${args.batchSize}; partitions created ahead; autovacuum off.`,
    '',
  ];
  const out = resolve(projectRoot, args.out);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, lines.join('\n'));
  log(lines.join('\n'));
  log(`written to ${out}`);
  return 0;
}

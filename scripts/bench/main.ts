/*
 * npm run bench [-- --events N] [-- --status-rows N] [-- --rounds N]: the benchmark of DESIGN
 * section 9, in a throwaway cluster of its own. Measures the producer side (COPY, 8-client
 * INSERTs), process_pending (one worker and two) against the strongest hand-written pipeline
 * (scripts/bench/strongest.ts), a plain-SQL reference, a naive row-by-row loop and a bare
 * INSERT … SELECT ceiling (fresh database clone for each run, contenders interleaved over
 * rounds, the median shown), 0% against 1% malformed events, pipeline_status latency, WAL and
 * table bytes per event; prints the table and writes it to bench-results/latest.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { connect, type Sql } from '../lib/db.ts';
import { projectRoot } from '../lib/paths.ts';
import { BenchUsageError, parseArgs, USAGE, type BenchArgs } from './args.ts';
import { benchCitus } from './citus.ts';
import { copyPayloads, makeDataset, type Dataset } from './load.ts';
import { median, runContender, type Contender, type Run } from './measure.ts';
import { measureCopy, measurePgbench, type PgbenchResult } from './producer.ts';
import { BENCH_SCHEMA, CEILING, NAIVE_SCHEMA, REFERENCE_SCHEMA } from './references.ts';
import { STRONGEST_LOAD, STRONGEST_SCHEMA, strongestOutcome } from './strongest.ts';
import {
  bytesTable,
  loadNow,
  machine,
  markdownReport,
  resultsTable,
  stageRows,
  stagesTable,
  type BytesRow,
  type ResultRow,
} from './report.ts';
import { migratedDatabase, startBenchServer, type BenchServer } from './server.ts';
import { measureStatus, type StatusResult } from './status.ts';

const log = (line: string) => console.log(line);

/**
 * A template database: migrated, the bench schema, the fact partitions the data needs, the events
 * loaded and vacuumed.
 */
async function loadedTemplate(server: BenchServer, name: string, data: Dataset): Promise<void> {
  const url = await migratedDatabase(server, name);
  const sql = connect(url, { max: 1 });
  try {
    await sql.unsafe(BENCH_SCHEMA + REFERENCE_SCHEMA + NAIVE_SCHEMA + STRONGEST_SCHEMA);
    // The maintenance job creates partitions ahead of time; the same for every contender.
    await sql`select spectrum.ensure_fact_partitions(
                array[date_trunc('month', now() - interval '8 days'), date_trunc('month', now())])`;
    await copyPayloads(sql, 'spectrum.raw_events', data);
    // Only raw_events: analyzing the empty dimensions would record them as empty (reltuples 0)
    // and make the foreign-key checks' cached plans seq scans, which no real deployment has.
    await sql`vacuum analyze spectrum.raw_events`;
    await sql.unsafe(STRONGEST_LOAD);
    await sql`vacuum analyze bench_s.raw`;
  } finally {
    await sql.end();
  }
}

const REFERENCE = 'plain-SQL reference';
const REFERENCE_X = 'plain-SQL reference + event-level exactly-once';
const NAIVE = 'naive loop (savepoint per event)';
const NAIVE_GUARDED = 'naive loop, widen-only dimension upserts';
const TWO_WORKERS = 'process_pending, 2 workers';
const STRONGEST = 'strongest reference (own schema, surrogate keys, HOT status)';

/** `statement` on `workers` connections at once, as the schedule's workers run it. */
async function concurrently(sql: Sql, url: string, workers: number, statement: string) {
  const others = Array.from({ length: workers - 1 }, () => connect(url, { max: 1 }));
  try {
    await Promise.all([sql, ...others].map((s) => s.unsafe(statement)));
  } finally {
    await Promise.all(others.map((o) => o.end()));
  }
}

function contenders(a: BenchArgs): Contender[] {
  const pipeline =
    `call spectrum.process_pending(p_batch_size => ${a.batchSize}, ` + `p_time_budget => '1 hour')`;
  return [
    {
      name: 'process_pending',
      template: 'bench_t1',
      events: a.events,
      run: (sql) => sql.unsafe(pipeline),
    },
    {
      name: TWO_WORKERS,
      template: 'bench_t1',
      events: a.events,
      run: (sql, url) => concurrently(sql, url, 2, pipeline),
    },
    {
      name: STRONGEST,
      template: 'bench_t1',
      events: a.events,
      run: (sql) => sql.unsafe(`call bench_s.process(${a.batchSize})`),
      outcome: strongestOutcome,
    },
    {
      name: REFERENCE,
      template: 'bench_t1',
      events: a.events,
      run: (sql) => sql.unsafe(`call bench.reference_process(${a.batchSize})`),
    },
    {
      name: REFERENCE_X,
      template: 'bench_t1',
      events: a.events,
      run: (sql) => sql.unsafe(`call bench.reference_exactly_once(${a.batchSize})`),
    },
    {
      name: NAIVE,
      template: 'bench_t1',
      events: a.events,
      run: (sql) => sql.unsafe(`call bench.naive_process(${a.batchSize})`),
    },
    {
      name: NAIVE_GUARDED,
      template: 'bench_t1',
      events: a.events,
      run: (sql) => sql.unsafe(`call bench.naive_process_widen_only(${a.batchSize})`),
    },
    {
      name: 'process_pending, all valid',
      template: 'bench_t0',
      events: a.events,
      run: (sql) => sql.unsafe(pipeline),
    },
    {
      name: 'INSERT … SELECT ceiling, all valid',
      template: 'bench_t0',
      events: a.events,
      run: (sql) => sql.unsafe(CEILING),
    },
  ];
}

const OUTCOME_KEYS = ['done', 'failed', 'pending', 'facts', 'accounts', 'users', 'places'] as const;

/** The pipeline and both references must have done the same work on the same data. */
function checkSameWork(runs: Run[]): string[] {
  const byName = (n: string) => runs.find((r) => r.contender === n)?.outcome;
  const base = byName('process_pending');
  const problems: string[] = [];
  for (const other of [TWO_WORKERS, STRONGEST, REFERENCE, REFERENCE_X, NAIVE, NAIVE_GUARDED]) {
    const o = byName(other);
    if (!base || !o) continue;
    const diff = OUTCOME_KEYS.filter((k) => base[k] !== o[k]).map(
      (k) => `${k} ${base[k]} vs ${o[k]}`,
    );
    if (diff.length)
      problems.push(`${other} did different work from process_pending: ${diff.join(', ')}`);
  }
  if (base && base.pending > 0) problems.push(`process_pending left ${base.pending} rows pending`);
  return problems;
}

const ratioCell = (
  ratio: number,
  versus: string,
  min: number,
): Pick<ResultRow, 'ratio' | 'result'> => ({
  ratio: `${ratio.toFixed(2)}x ${versus} (target >= ${min}x)`,
  result: ratio >= min ? 'PASS' : 'MISS',
});

async function main() {
  let args: BenchArgs;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof BenchUsageError)) throw e;
    console.error(e.message === 'help' ? USAGE : `npm run bench: ${e.message}\n${USAGE}`);
    process.exit(e.message === 'help' ? 0 : 2);
  }
  if (args.citus) process.exit(await benchCitus(args, log));
  const loadStart = loadNow();
  const server = await startBenchServer(log);
  try {
    const [{ version }] =
      (await server.admin`select current_setting('server_version') as version`) as unknown as [
        { version: string },
      ];
    let t = performance.now();
    const valid = makeDataset('all valid', args.events, 0);
    const malformed = makeDataset('1% malformed', args.events, 0.01);
    log(
      `generated 2 x ${args.events.toLocaleString('en-US')} events ` +
        `(${(malformed.bytes / args.events).toFixed(0)} bytes of JSON each) in ` +
        `${((performance.now() - t) / 1000).toFixed(1)} s`,
    );

    t = performance.now();
    await loadedTemplate(server, 'bench_t1', malformed);
    await loadedTemplate(server, 'bench_t0', valid);
    await migratedDatabase(server, 'bench_producer');
    const producerSql = connect(server.cluster.url('bench_producer'), { max: 1 });
    await producerSql.unsafe(BENCH_SCHEMA);
    await producerSql.end();
    // A COPY takes a second or so per 100k events, so it gets three times the rounds: the
    // machine's drift of a few seconds would otherwise decide a 10% margin.
    const copyRounds = 3 * args.rounds;
    log(
      `templates loaded in ${((performance.now() - t) / 1000).toFixed(1)} s; measuring COPY ` +
        `(${copyRounds} rounds)`,
    );

    const copies = await measureCopy(server, 'bench_producer', malformed, copyRounds);
    // The two tables take turns, round after round, as the COPYs do.
    const pgbench = new Map<string, PgbenchResult[]>();
    if (args.pgbenchSeconds > 0) {
      const tables = ['bench.raw_bare', 'spectrum.raw_events'];
      for (let round = 0; round < args.rounds; round++) {
        for (const table of round % 2 ? [...tables].reverse() : tables) {
          log(
            `pgbench, round ${round + 1}: 8 clients inserting single rows into ${table} for ` +
              `${args.pgbenchSeconds} s`,
          );
          pgbench.set(table, [
            ...(pgbench.get(table) ?? []),
            measurePgbench(server, 'bench_producer', table, args.pgbenchSeconds),
          ]);
        }
      }
    }

    const all = contenders(args);
    const runs = new Map<string, Run[]>(all.map((c) => [c.name, []]));
    for (let round = 0; round < args.rounds; round++) {
      // Rotate the order so that drift on a shared machine spreads over every contender.
      const order = all.map((_, i) => all[(i + round) % all.length]!);
      for (const c of order) {
        const run = await runContender(server, c);
        runs.get(c.name)!.push(run);
        log(
          `  round ${round + 1}: ${c.name}: ${c.events.toLocaleString('en-US')} events in ` +
            `${run.seconds.toFixed(2)} s ` +
            `(${Math.round(c.events / run.seconds).toLocaleString('en-US')}/s)`,
        );
      }
    }

    let status: StatusResult | null = null;
    if (args.statusRows > 0) {
      log(`pipeline_status: loading ${args.statusRows.toLocaleString('en-US')} raw rows`);
      status = await measureStatus(server, args.statusRows, log);
    }

    // The table.
    const med = (name: string) => median(runs.get(name)!.map((r) => r.seconds));
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
    const rows: ResultRow[] = [];
    const copyRaw = copies.find((c) => c.table === 'spectrum.raw_events')!;
    const copyBare = copies.find((c) => c.table === 'bench.raw_bare')!;
    const copyKeyed = copies.find((c) => c.table === 'bench.raw_bare_pk')!;
    rows.push({
      contender: 'COPY into a bare table (same columns, no index)',
      events: args.events,
      seconds: median(copyBare.seconds),
      rate: args.events / median(copyBare.seconds),
      spread: spread(copyBare.seconds),
    });
    rows.push({
      contender: 'COPY into the bare table with only a primary key',
      events: args.events,
      seconds: median(copyKeyed.seconds),
      rate: args.events / median(copyKeyed.seconds),
      spread: spread(copyKeyed.seconds),
      ratio:
        `${(median(copyBare.seconds) / median(copyKeyed.seconds)).toFixed(2)}x bare COPY ` +
        '(for information)',
    });
    rows.push({
      contender: 'COPY into spectrum.raw_events',
      events: args.events,
      seconds: median(copyRaw.seconds),
      rate: args.events / median(copyRaw.seconds),
      spread: spread(copyRaw.seconds),
      ...ratioCell(median(copyBare.seconds) / median(copyRaw.seconds), 'bare COPY', 0.9),
    });
    for (const [table, ps] of pgbench) {
      const tps = ps.map((p) => p.tps);
      rows.push({
        contender: `single-row INSERT into ${table}, ${ps[0]!.clients} clients (pgbench)`,
        events: median(ps.map((p) => p.transactions)),
        seconds: args.pgbenchSeconds,
        rate: median(tps),
        spread:
          `${Math.round(Math.min(...tps)).toLocaleString('en-US')}–` +
          `${Math.round(Math.max(...tps)).toLocaleString('en-US')} tps`,
      });
    }
    for (const c of all) {
      const xs = runs.get(c.name)!.map((r) => r.seconds);
      rows.push({
        contender: c.name,
        events: c.events,
        seconds: median(xs),
        rate: c.events / median(xs),
        spread: spread(xs),
      });
    }
    const pp = med('process_pending');
    rows.push({
      contender: 'process_pending, 2 workers vs 1',
      events: null,
      seconds: null,
      rate: null,
      ratio: `${(pp / med(TWO_WORKERS)).toFixed(2)}x one worker (for information)`,
    });
    rows.push({
      contender: 'process_pending vs strongest reference',
      events: null,
      seconds: null,
      rate: null,
      ...ratioCell(med(STRONGEST) / pp, 'strongest', 1.0),
    });
    rows.push({
      contender: 'process_pending vs plain-SQL reference',
      events: null,
      seconds: null,
      rate: null,
      ratio: `${(med(REFERENCE) / pp).toFixed(2)}x (for information)`,
    });
    rows.push({
      contender: 'process_pending vs reference + exactly-once',
      events: null,
      seconds: null,
      rate: null,
      ratio: `${(med(REFERENCE_X) / pp).toFixed(2)}x (for information)`,
    });
    rows.push({
      contender: 'process_pending vs naive loop',
      events: null,
      seconds: null,
      rate: null,
      ...ratioCell(med(NAIVE) / pp, 'naive', 3),
    });
    rows.push({
      contender: 'process_pending vs naive loop, widen-only upserts',
      events: null,
      seconds: null,
      rate: null,
      ratio: `${(med(NAIVE_GUARDED) / pp).toFixed(2)}x (for information)`,
    });
    rows.push({
      contender: 'process_pending, 1% malformed vs all valid',
      events: null,
      seconds: null,
      rate: null,
      ...ratioCell(med('process_pending, all valid') / pp, 'all valid', 0.9),
    });
    if (status)
      rows.push({
        contender:
          `SELECT * FROM spectrum.pipeline_status, ${status.rows.toLocaleString('en-US')} ` +
          `raw rows (median of ${status.runsMs.length})`,
        events: null,
        seconds: null,
        rate: null,
        spread:
          `${Math.min(...status.runsMs).toFixed(1)}–` +
          `${Math.max(...status.runsMs).toFixed(1)} ms`,
        ratio: `${status.medianMs.toFixed(1)} ms (target < 50 ms)`,
        result: status.medianMs < 50 ? 'PASS' : 'MISS',
      });

    const last = (name: string) => runs.get(name)!.at(-1)!;
    const bytes: BytesRow[] = [
      {
        what: 'COPY into bench bare table',
        walPerEvent: median(copyBare.walBytes) / args.events,
        tablePerEvent: copyBare.bytes / args.events,
      },
      {
        what: 'COPY into the bare table with only a primary key',
        walPerEvent: median(copyKeyed.walBytes) / args.events,
        tablePerEvent: copyKeyed.bytes / args.events,
      },
      {
        what: 'COPY into spectrum.raw_events',
        walPerEvent: median(copyRaw.walBytes) / args.events,
        tablePerEvent: copyRaw.bytes / args.events,
      },
      ...all.map((c) => {
        const r = last(c.name);
        const facts = r.outcome.facts || 1;
        const factBytes =
          (r.sizes.fact_events ?? 0) +
          (r.sizes.fact_bare ?? 0) +
          (r.sizes.event_registry ?? 0) +
          (r.sizes.facts ?? 0);
        return {
          what: `${c.name}: WAL per event; facts (+ event_registry) per fact`,
          walPerEvent: median(runs.get(c.name)!.map((x) => x.walBytes)) / c.events,
          tablePerEvent: factBytes / facts,
        };
      }),
      {
        what: 'raw_events after process_pending (both row versions until vacuum)',
        walPerEvent: null,
        tablePerEvent: (last('process_pending').sizes.raw_events ?? 0) / args.events,
      },
    ];
    const stages = ['process_pending', STRONGEST].map((n) => ({
      title: `Where the time goes: ${n}, last round (pg_stat_statements, nested statements)`,
      rows: stageRows(last(n).stages, last(n).seconds),
    }));
    const problems = checkSameWork(all.map((c) => last(c.name)));
    const o = last('process_pending').outcome;
    const notes = [
      `process_pending outcome: ${o.done} done, ${o.failed} failed, ${o.facts} facts, ` +
        `${o.accounts} accounts, ${o.users} users, ${o.places} places; ` +
        `${problems.length ? problems.join('; ') : 'the references did the same work'}.`,
      `Each contender ran ${args.rounds} time(s) on a fresh clone of the same loaded database, ` +
        `contenders interleaved; seconds is the median. Batch size ${args.batchSize}. Partitions ` +
        `created ahead (as the maintenance job does). Autovacuum off during the run.`,
      ...(status
        ? [
            `pipeline_status: ${status.pending} pending, ${status.failed} failed, the rest done; ` +
              `loaded in ${status.loadSeconds.toFixed(0)} s; server-side execution ` +
              `${status.serverMs.toFixed(1)} ms.`,
          ]
        : []),
    ];

    const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`
      .trim()
      .replace(/ --$/, '');
    const m = machine(`PostgreSQL ${version}`, loadStart);
    console.log(`\n${resultsTable(rows, false)}\n\n${bytesTable(bytes, false)}\n`);
    for (const s of stages) console.log(`${s.title}:\n${stagesTable(s.rows, false)}\n`);
    for (const n of notes) console.log(n);
    const out = resolve(projectRoot, args.out);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(
      out,
      markdownReport({ machine: m, command, results: rows, bytes, stages, notes }),
    );
    console.log(`\nwritten to ${out}`);
    if (problems.length) process.exitCode = 1;
  } finally {
    server.stop();
  }
}

main().catch((e) => {
  console.error(`npm run bench failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});

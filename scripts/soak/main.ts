/*
 * npm run soak [-- --minutes M --rate R --tick 1m]: the pipeline under steady traffic, on the
 * real pg_cron tick, for a long time, through the faults a server meets, in a throwaway cluster
 * of its own. Prints one line per tick while it runs, then the checks as tables; exits 1 on any
 * loss, duplicate or failed check, or a fault that could not be injected, 2 on a bad argument.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { loadNow, machine } from '../bench/report.ts';
import { connect } from '../lib/db.ts';
import { rng } from '../lib/events.ts';
import { projectRoot } from '../lib/paths.ts';
import { parseArgs, SoakUsageError, USAGE, type SoakArgs } from './args.ts';
import { finalChecks } from './check.ts';
import { prepareDisk, unmountAll } from './disk.ts';
import { FAULTS, recoveries, type FaultContext, type FaultResult } from './faults.ts';
import { HEADER, line, Monitor } from './monitor.ts';
import { Ledger, Producers } from './producers.ts';
import { finalReport, markdown } from './report.ts';
import { startSoakServer, type SoakServer } from './server.ts';

const log = (l: string) => console.log(l);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const n = (x: number) => Math.round(x).toLocaleString('en-US');

/** The faults in a random order, each at a random moment of its slot of the run. */
function plan(args: SoakArgs, random: () => number): { at: number; fault: (typeof FAULTS)[0] }[] {
  const order = FAULTS.map((f) => ({ f, k: random() }))
    .sort((a, b) => a.k - b.k)
    .map((x) => x.f);
  // From one tick in (a backlog and a first tick behind it) to two ticks before the producers
  // stop; each fault at a random moment of the first half of its slot, the rest of the slot
  // for waiting for a tick to catch.
  const start = args.tickSeconds;
  const end = args.minutes * 60 - 2 * args.tickSeconds;
  const slot = (end - start) / order.length;
  return order.map((fault, i) => ({ at: start + slot * (i + random() * 0.5), fault }));
}

/** Waits for a tick that started after the producers stopped to finish with nothing pending. */
async function finalTick(server: SoakServer, tickSeconds: number): Promise<number> {
  const sql = connect(server.url, { max: 1 });
  const t = performance.now();
  try {
    const [{ since }] = (await sql`select pg_catalog.clock_timestamp() as since`) as unknown as [
      { since: Date },
    ];
    const until = t + (4 * tickSeconds + 180) * 1000;
    while (performance.now() < until) {
      const [r] = await sql<{ ran: boolean; left: number }[]>`
        select exists (select from spectrum.pipeline_runs
                        where started_at > ${since} and finished_at is not null) as ran,
               (select count(*)::int from spectrum.raw_events
                 where status in ('pending', 'processing')) as left`;
      if (r!.ran && r!.left === 0) return (performance.now() - t) / 1000;
      await sleep(500);
    }
    throw new Error(
      `no tick left the backlog empty within ${4 * tickSeconds + 180} s of the producers ` +
        `stopping: is pg_cron running the jobs? (select * from cron.job_run_details)`,
    );
  } finally {
    await sql.end();
  }
}

/** min, median and max of the 1-minute load average seen at the ticks. */
function loadSpread(loads: number[]): string {
  if (loads.length === 0) return '-';
  const sorted = [...loads].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return (
    `min ${at(0).toFixed(2)}, median ${at(0.5).toFixed(2)}, max ${at(1).toFixed(2)} ` +
    `(the machine is shared: others' work included)`
  );
}

/**
 * The machine-readable outcome: one line `SOAK-SUMMARY {json}` on stdout, and the same JSON in
 * the file named by SOAK_SUMMARY_FILE when it is set (the test reads it).
 */
function writeSummary(args: SoakArgs, summary: Record<string, unknown>): void {
  const json = JSON.stringify({ args, ...summary });
  console.log(`SOAK-SUMMARY ${json}`);
  const file = process.env.SOAK_SUMMARY_FILE;
  if (file) writeFileSync(file, json + '\n');
}

async function main() {
  let args: SoakArgs;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof SoakUsageError) {
      if (e.message === 'help') console.log(USAGE);
      else console.error(`npm run soak: ${e.message}\n\n${USAGE}`);
      process.exit(e.message === 'help' ? 0 : 2);
    }
    throw e;
  }
  const loadStart = loadNow();
  const random = rng(args.seed * 7919);
  const tag = (0x50a4 * 65536 + args.seed).toString(16).padStart(8, '0').slice(-8);
  const server = await startSoakServer(args.tickSeconds, log);
  // The server before the mounts: the tablespace's files are held until it stops.
  let kept = false;
  const cleanup = () => {
    // The server's log of a run that did not pass is kept for the post-mortem.
    if (!kept && process.exitCode !== 0) {
      kept = true;
      const copy = join(tmpdir(), `spectrum-soak-${process.pid}.log`);
      try {
        copyFileSync(join(server.cluster.dataDir, 'server.log'), copy);
        console.error(`the soak server's log is kept in ${copy}`);
      } catch {
        // No log to keep.
      }
    }
    server.cluster.remove();
    unmountAll();
  };
  // postgres.js can throw from a timer when a server dies under a COPY it is writing (its
  // socket is gone): the send already failed and is sent again; the run goes on.
  process.on('uncaughtException', (e) => {
    if (String(e.stack).includes('/postgres/src/')) {
      log(`  (client library error after a lost connection, ignored: ${e.message})`);
      return;
    }
    console.error(`npm run soak: ${e.stack ?? e}`);
    process.exitCode = 1;
    cleanup();
    process.exit(1);
  });
  process.once('exit', cleanup);
  // A soak stopped by a signal has proven nothing: it exits non-zero (128 + the signal's
  // number, as a shell reports it), after stopping its cluster.
  // A second signal (npm and tsx pass theirs on too) must not cut the cleanup short.
  let stopping = false;
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const)
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      log(
        `\n${sig}: stopped before its checks; stopping the soak cluster, removing ${server.cluster.dataDir}`,
      );
      writeSummary(args, { passed: false, stoppedBy: sig });
      process.exitCode = code;
      cleanup();
      process.exit(code);
    });

  const admin = connect(server.url, { max: 1, connection: { application_name: 'soak-faults' } });
  const watch = connect(server.url, { max: 1, connection: { application_name: 'soak-monitor' } });
  try {
    const [{ version }] = (await admin`
      select current_setting('server_version') as version`) as unknown as [{ version: string }];
    const disk = await prepareDisk(admin, log);
    const ledger = new Ledger();
    const t0 = performance.now();
    const clock = () => (performance.now() - t0) / 1000;
    const producers = new Producers({
      url: server.urlAs('soak_producer'),
      producers: args.producers,
      rate: args.rate,
      seed: args.seed,
      tag,
      ledger,
      clock,
    });
    const cpuStart = server.cpuSeconds();
    const nodeStart = process.cpuUsage();
    const monitor = new Monitor(watch, ledger, clock, server.cpuSeconds, cpus().length, log);
    log(
      `${args.producers} producers at ${n(args.rate)} events/s for ${args.minutes} min ` +
        `(1% malformed, 1% sent twice); faults at random moments; one line per tick:`,
    );
    producers.start();
    monitor.start();

    const ctx: FaultContext = {
      server,
      admin,
      producers,
      ledger,
      rate: args.rate,
      tickSeconds: args.tickSeconds,
      clock,
      random,
      log,
      disk,
      reprocessed: [],
    };
    const results: FaultResult[] = [];
    for (const { at, fault } of plan(args, random)) {
      while (clock() < at) await sleep(200);
      log(`  fault at +${clock().toFixed(0)} s: ${fault.name}`);
      // A fault that fails is reported as not injected; the soak goes on.
      const r = await fault.run(ctx).catch((e: Error): FaultResult => ({
        fault: fault.name,
        at: null,
        atDate: null,
        recoverFrom: null,
        injected: false,
        recovered: null,
        figures: `the fault itself failed: ${e.message}`,
      }));
      results.push(r);
      log(`  fault ${fault.name}: ${r.injected ? '' : 'NOT INJECTED: '}${r.figures}`);
    }
    const faultsDone = clock();
    const overran = clock() > args.minutes * 60 - args.tickSeconds;
    if (overran)
      log(`  the faults ran until +${clock().toFixed(0)} s: the producers go on for one more tick`);
    while (clock() < args.minutes * 60 || (overran && clock() < faultsDone + args.tickSeconds))
      await sleep(200);
    const produced = clock();
    await producers.stop();
    const cpuUsed = server.cpuSeconds() - cpuStart;
    const node = process.cpuUsage(nodeStart);
    log(`  producers stopped at +${produced.toFixed(0)} s; waiting for the final tick`);
    const drain = await finalTick(server, args.tickSeconds);
    await sleep(1500);
    monitor.stop();
    const last = await monitor.poll(true);
    const first = monitor.samples.find((x) => x.runId !== null) ?? monitor.samples[0];
    if (!last || !first) throw new Error('the monitor recorded no tick');

    await recoveries(admin, results);
    log('checking…');
    const outcome = await finalChecks(admin, ledger, tag, ctx.reprocessed);
    const [ticks] = await admin<{ ok: number; failed: number; runs: number; unfinished: number }[]>`
      select count(*) filter (where d.status = 'succeeded')::int as ok,
             count(*) filter (where d.status = 'failed')::int as failed,
             (select count(*)::int from spectrum.pipeline_runs) as runs,
             (select count(*)::int from spectrum.pipeline_runs where finished_at is null)
               as unfinished
        from cron.job_run_details d join cron.job j using (jobid)
       where j.jobname like 'spectrum.process_pending%'`;
    const count = (o: 'committed' | 'refused' | 'cut') => ledger.count(o);
    const traffic: [string, string][] = [
      ['producers', `${args.producers} at ${n(args.rate)} events/s for ${produced.toFixed(0)} s`],
      [
        'rows committed',
        `${n(count('committed').rows)} in ${n(count('committed').sends)} sends ` +
          `(${n(count('committed').rows / produced)}/s)`,
      ],
      [
        'rows refused (sent again)',
        `${n(count('refused').rows)} in ${n(count('refused').sends)} sends`,
      ],
      [
        'rows cut mid-COPY (sent again)',
        `${n(count('cut').rows)} in ${n(count('cut').sends)} sends`,
      ],
      [
        'events',
        `${n(outcome.counts.events!)} (${n(outcome.counts.raw_rows!)} raw rows, ` +
          `${n(outcome.counts.malformed_rows!)} malformed, ${n(outcome.counts.events_sent_twice!)} ` +
          `sent more than once), ${n(outcome.counts.facts!)} facts`,
      ],
      [
        'ticks (pg_cron)',
        `${ticks!.ok} succeeded, ${ticks!.failed} failed; ${ticks!.runs} process_pending runs, ` +
          `${ticks!.unfinished} left unfinished by the faults`,
      ],
      ['tick schedule', server.tickSchedule],
      ['final tick', `backlog empty ${drain.toFixed(0)} s after the producers stopped`],
      [
        'server CPU while producing',
        `${((cpuUsed / produced / cpus().length) * 100).toFixed(0)}% of ${cpus().length} cores ` +
          `(producers in Node: ${(((node.user + node.system) / 1e6 / produced / cpus().length) * 100).toFixed(0)}%)`,
      ],
      ['load average (1, 5, 15 min)', `${loadStart} at the start, ${loadNow()} at the end`],
      ['load average (1 min) at the ticks', loadSpread(monitor.samples.map((x) => x.load))],
    ];
    const report = finalReport({
      outcome,
      faults: results,
      first,
      last,
      samples: monitor.samples,
      tickSeconds: args.tickSeconds,
      traffic,
    });
    log(`\n${report.text}`);
    if (args.out) {
      const m = machine(`PostgreSQL ${version}`, loadStart);
      const command = `npm run soak -- ${process.argv.slice(2).join(' ')}`
        .trim()
        .replace(/ --$/, '');
      const out = resolve(projectRoot, args.out);
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(
        out,
        [
          `# Soak: ${command}`,
          '',
          markdown(
            ['machine', ''],
            [
              ['date', m.date],
              ['commit', m.commit],
              ['cpu', `${m.cpus} x ${m.cpuModel}, ${m.memoryGiB} GiB`],
              ['postgres', m.postgres],
            ],
          ),
          '',
          report.text,
          '',
          '### Per tick',
          '',
          '```',
          HEADER,
          ...monitor.samples.map(line),
          '```',
          '',
        ].join('\n'),
      );
      log(`\nwritten to ${out}`);
    }
    writeSummary(args, {
      passed: report.passed,
      checks: outcome.checks,
      latency: outcome.latency,
      counts: outcome.counts,
      faults: results.map((f) => ({
        fault: f.fault,
        at: f.at,
        injected: f.injected,
        recovered: f.recovered,
        figures: f.figures,
      })),
      committedRows: count('committed').rows,
      producedSeconds: produced,
      rate: args.rate,
      tickSeconds: args.tickSeconds,
      sizes: {
        start: { raw: first.rawBytes, facts: first.factBytes },
        end: { raw: last.rawBytes, facts: last.factBytes },
      },
    });
    process.exitCode = report.passed ? 0 : 1;
  } finally {
    await admin.end({ timeout: 1 }).catch(() => {});
    await watch.end({ timeout: 1 }).catch(() => {});
    cleanup();
  }
}

main().catch((e) => {
  console.error(`npm run soak: ${(e as Error).stack ?? e}`);
  process.exit(1);
});

/*
 * The faults a server meets, each injected once at a random moment and the soak goes on: a
 * crash mid-tick (pg_ctl stop -m immediate, then start), the tick's backend cancelled, then
 * terminated, maintenance overlapping a tick and a reprocess, a producer's connection cut
 * mid-COPY, and a disk that fills under raw_events. Each returns its figures; whether anything
 * was lost is for the final checks.
 */
import { connect, type Sql } from '../lib/db.ts';
import { fillableDisk } from './disk.ts';
import type { CutRequest, Ledger, Producers } from './producers.ts';
import { reachable, type SoakServer } from './server.ts';

export interface FaultResult {
  fault: string;
  /** Seconds into the soak when it struck; null when it never could. */
  at: number | null;
  injected: boolean;
  /** Seconds from the fault until a tick that started after it finished; null: none did. */
  recovered: number | null;
  figures: string;
}

export interface FaultContext {
  server: SoakServer;
  admin: Sql;
  producers: Producers;
  ledger: Ledger;
  /** Events per second, all producers together. */
  rate: number;
  tickSeconds: number;
  clock: () => number;
  random: () => number;
  log: (line: string) => void;
  /** Reprocessed windows: their rows' latency includes the wait for the reprocess. */
  reprocessed: { after: Date; before: Date }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const n = (x: number) => x.toLocaleString('en-US');

interface Tick {
  pid: number;
  runId: number;
}

/**
 * Waits for the tick's backend to be inside process_pending (its run row committed, not
 * finished), for at most `seconds`.
 */
async function runningTick(sql: Sql, seconds: number): Promise<Tick | null> {
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    try {
      const [t] = await sql<{ pid: number; run_id: number }[]>`
        select a.pid, r.run_id::int
          from pg_catalog.pg_stat_activity a
          join lateral (select run_id from spectrum.pipeline_runs p
                         where p.finished_at is null and p.started_at >= a.query_start
                         order by run_id desc limit 1) r on true
         where a.backend_type = 'pg_cron' and a.state = 'active' and a.query like 'CALL %'
           and a.wait_event is distinct from 'PgSleep'`;
      if (t) return { pid: t.pid, runId: t.run_id };
    } catch {
      // The server is coming back.
    }
    await sleep(15);
  }
  return null;
}

async function runRow(sql: Sql, runId: number) {
  const [r] = await sql<{ finished: boolean; batches: number; claimed: number }[]>`
    select finished_at is not null as finished, batches, claimed::int
      from spectrum.pipeline_runs where run_id = ${runId}`;
  return r!;
}

/** Seconds until a tick that started after `since` (server time) finishes. */
async function recovery(ctx: FaultContext, since: Date, t0: number): Promise<number | null> {
  const until = performance.now() + (3 * ctx.tickSeconds + 60) * 1000;
  while (performance.now() < until) {
    try {
      const [r] = await ctx.admin`
        select 1 from spectrum.pipeline_runs
         where started_at > ${since} and finished_at is not null limit 1`;
      if (r) return ctx.clock() - t0;
    } catch {
      // Not back yet.
    }
    await sleep(250);
  }
  return null;
}

const serverNow = async (sql: Sql) =>
  (await sql<{ now: Date }[]>`select pg_catalog.clock_timestamp() as now`)[0]!.now;

/**
 * Strikes a running tick with `strike`, up to three ticks until one is hit mid-run (its run row
 * still unfinished afterwards).
 */
async function midTick(
  ctx: FaultContext,
  strike: (tick: Tick) => Promise<string>,
): Promise<{ at: number; tick: Tick; detail: string; hit: boolean } | null> {
  let last: { at: number; tick: Tick; detail: string; hit: boolean } | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const tick = await runningTick(ctx.admin, ctx.tickSeconds * 1.5 + 5);
    if (!tick) continue;
    await sleep(ctx.random() * 40);
    const at = ctx.clock();
    const detail = await strike(tick);
    await reachable(ctx.admin);
    await sleep(300);
    const hit = !(await runRow(ctx.admin, tick.runId)).finished;
    last = { at, tick, detail, hit };
    if (hit) return last;
  }
  return last;
}

async function crash(ctx: FaultContext): Promise<FaultResult> {
  const refused = ctx.ledger.sends.length;
  let times = { stop: 0, start: 0 };
  const r = await midTick(ctx, async () => {
    times = await ctx.server.crashAndRestart(2);
    return '';
  });
  if (!r) return notInjected('server crash mid-tick (pg_ctl stop -m immediate)', ctx.tickSeconds);
  const since = await serverNow(ctx.admin);
  const rec = await recovery(ctx, since, r.at);
  const run = await runRow(ctx.admin, r.tick.runId);
  const lost = ctx.ledger.sends.slice(refused).filter((s) => s.outcome === 'refused');
  return {
    fault: 'server crash mid-tick (pg_ctl stop -m immediate)',
    at: r.at,
    injected: r.hit,
    recovered: rec,
    figures:
      `run ${r.tick.runId} ${run.finished ? 'had finished (not mid-tick)' : `left unfinished after ${run.batches} committed batches`}; ` +
      `stop ${times.stop.toFixed(1)} s, down 2 s, start with crash recovery ` +
      `${times.start.toFixed(1)} s; ${n(lost.length)} sends ` +
      `(${n(lost.reduce((k, s) => k + s.count, 0))} rows) refused meanwhile, sent again`,
  };
}

async function signal(ctx: FaultContext, how: 'cancel' | 'terminate'): Promise<FaultResult> {
  const name = `tick's backend ${how === 'cancel' ? 'cancelled (pg_cancel_backend)' : 'terminated (pg_terminate_backend)'}`;
  const r = await midTick(ctx, async (tick) => {
    if (how === 'cancel') await ctx.admin`select pg_catalog.pg_cancel_backend(${tick.pid})`;
    else await ctx.admin`select pg_catalog.pg_terminate_backend(${tick.pid})`;
    return '';
  });
  if (!r) return notInjected(name, ctx.tickSeconds);
  const since = await serverNow(ctx.admin);
  const rec = await recovery(ctx, since, r.at);
  const run = await runRow(ctx.admin, r.tick.runId);
  const [job] = await ctx.admin<{ status: string; message: string }[]>`
    select status, return_message as message from cron.job_run_details
     where job_pid = ${r.tick.pid} order by runid desc limit 1`;
  return {
    fault: name,
    at: r.at,
    injected: r.hit,
    recovered: rec,
    figures:
      `run ${r.tick.runId} ${run.finished ? 'had finished (not mid-tick)' : `left unfinished after ${run.batches} committed batches`}; ` +
      `cron.job_run_details: ${job ? `${job.status}, "${job.message.trim().split('\n')[0]}"` : 'no row'}`,
  };
}

async function overlap(ctx: FaultContext): Promise<FaultResult> {
  const name = 'maintenance overlapping a tick and a reprocess';
  const tick = await runningTick(ctx.admin, ctx.tickSeconds * 1.5 + 5);
  if (!tick) return notInjected(name, ctx.tickSeconds);
  const at = ctx.clock();
  const maint = connect(ctx.server.url, { max: 1 });
  const operator = connect(ctx.server.urlAs('soak_operator'), { max: 1 });
  try {
    const now = await serverNow(ctx.admin);
    const after = new Date(now.getTime() - 2 * ctx.tickSeconds * 1000);
    const before = new Date(now.getTime() - ctx.tickSeconds * 1000);
    ctx.reprocessed.push({ after, before });
    const timed = async <T>(p: Promise<T>) => {
      const t = performance.now();
      const v = await p;
      return { v, s: (performance.now() - t) / 1000 };
    };
    const [m, rp] = await Promise.all([
      timed(maint`call spectrum.maintenance()`),
      timed(operator<{ n: number }[]>`
        select spectrum.reprocess(received_after => ${after}, received_before => ${before})::int
               as n`),
    ]);
    const [run] = await ctx.admin<{ partitions: number; note: string | null }[]>`
      select partitions_created as partitions, note from spectrum.maintenance_runs
       order by run_id desc limit 1`;
    await sleep(300);
    const tickRun = await runRow(ctx.admin, tick.runId);
    const rec = await recovery(ctx, await serverNow(ctx.admin), at);
    return {
      fault: name,
      at,
      injected: true,
      recovered: rec,
      figures:
        `during run ${tick.runId}: maintenance ${m.s.toFixed(2)} s (partitions created ` +
        `${run?.partitions ?? '?'}${run?.note ? `, ${run.note}` : ''}); reprocess of one tick's ` +
        `window re-queued ${n(rp.v[0]!.n)} rows in ${rp.s.toFixed(2)} s; run ${tick.runId} ` +
        `${tickRun.finished ? 'finished normally' : 'still running'}`,
    };
  } finally {
    await maint.end();
    await operator.end();
  }
}

async function copyCut(ctx: FaultContext): Promise<FaultResult> {
  const name = "producer's connection cut mid-COPY";
  for (let attempt = 0; attempt < 3; attempt++) {
    const producer = 1 + Math.floor(ctx.random() * ctx.producers.connections.length);
    const request: CutRequest = { producer, rows: 3000 };
    ctx.producers.cutRequest = request;
    let struck: { at: number; rows: number; bytes: number } | null = null;
    const until = performance.now() + 20_000;
    while (!request.outcome && performance.now() < until) {
      const [p] = await ctx.admin<{ pid: number; rows: number; bytes: number }[]>`
        select c.pid, c.tuples_processed::int as rows, c.bytes_processed::float8 as bytes
          from pg_catalog.pg_stat_progress_copy c
          join pg_catalog.pg_stat_activity a using (pid)
         where a.application_name = ${`soak-producer-${producer}`} and c.tuples_processed > 0`;
      if (p && !struck) {
        await sleep(ctx.random() * 500);
        struck = { at: ctx.clock(), rows: p.rows, bytes: p.bytes };
        await ctx.admin`select pg_catalog.pg_terminate_backend(${p.pid})`;
      }
      await sleep(10);
    }
    ctx.producers.cutRequest = null;
    const send = [...ctx.ledger.sends]
      .reverse()
      .find((s) => s.producer === producer && s.outcome === 'cut');
    if (struck && request.outcome === 'cut' && send)
      return {
        fault: name,
        at: struck.at,
        injected: true,
        recovered: 0,
        figures:
          `producer ${producer}'s COPY of ${n(send.count)} rows: backend terminated after the ` +
          `server had read ${n(struck.rows)} rows; the client got ${send.code}; none may appear ` +
          `(soak_seq ${send.first}–${send.first + send.count - 1}), the events sent again`,
      };
  }
  return notInjected(name, 0);
}

async function diskFull(ctx: FaultContext): Promise<FaultResult> {
  const name = "raw_events' disk full";
  let standInWhy = '';
  const room = Math.max(2 * 2 ** 20, 700 * ctx.rate * 2);
  const disk = await fillableDisk(ctx.admin, room, (w) => (standInWhy = w));
  const at = ctx.clock();
  const began = await serverNow(ctx.admin);
  const first = ctx.ledger.sends.length;
  const full = () => ctx.ledger.sends.slice(first).find((s) => s.code === '53100');
  const until = performance.now() + 60_000;
  while (!full() && performance.now() < until) await sleep(100);
  const hit = full();
  if (hit) await sleep(3000 + ctx.random() * 3000);
  const fullFor = ctx.clock() - (hit?.at ?? at);
  const [tick] = await ctx.admin<{ status: string; message: string }[]>`
    select status, return_message as message from cron.job_run_details
     where status = 'failed' and start_time >= ${began} and return_message like '%space%'
     order by runid desc limit 1`;
  await disk.grow();
  const grown = ctx.clock();
  const backSeconds = await disk.release();
  const refused = ctx.ledger.sends
    .slice(first)
    .filter((s) => s.outcome === 'refused' && s.code === '53100');
  const since = await serverNow(ctx.admin);
  const rec = await recovery(ctx, since, grown);
  return {
    fault: name,
    at,
    injected: Boolean(hit),
    recovered: rec,
    figures:
      (disk.kind === 'tmpfs'
        ? `raw_events moved in ${disk.moveSeconds.toFixed(1)} s onto a tmpfs with ` +
          `${(disk.room / 2 ** 20).toFixed(1)} MB to spare; `
        : `stand-in (${standInWhy}): a trigger refusing inserts with 53100; `) +
      `inserts refused (53100) ${hit ? `from +${(hit.at - at).toFixed(1)} s` : 'never'}, for ` +
      `${fullFor.toFixed(1)} s: ${n(refused.length)} sends ` +
      `(${n(refused.reduce((k, s) => k + s.count, 0))} rows) refused, sent again after the ` +
      `disk grew; ${tick ? 'a tick failed on it too' : 'no tick failed on it'}; moved back in ` +
      `${backSeconds.toFixed(1)} s`,
  };
}

function notInjected(fault: string, tickSeconds: number): FaultResult {
  return {
    fault,
    at: null,
    injected: false,
    recovered: null,
    figures: tickSeconds
      ? `no tick was caught running within ${Math.round(tickSeconds * 1.5 + 5)} s, three times`
      : 'not injected',
  };
}

export const FAULTS: { name: string; run: (ctx: FaultContext) => Promise<FaultResult> }[] = [
  { name: 'crash', run: crash },
  { name: 'cancel', run: (ctx) => signal(ctx, 'cancel') },
  { name: 'terminate', run: (ctx) => signal(ctx, 'terminate') },
  { name: 'overlap', run: overlap },
  { name: 'copy cut', run: copyCut },
  { name: 'disk full', run: diskFull },
];

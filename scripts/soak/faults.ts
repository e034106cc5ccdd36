/*
 * The faults a server meets, each injected once at a random moment and the soak goes on: a
 * crash mid-tick (pg_ctl stop -m immediate, then start), the tick's backend cancelled, then
 * terminated, maintenance overlapping a tick and a reprocess, a producer's connection cut
 * mid-COPY, and a disk that fills under raw_events. Each returns its figures; whether anything
 * was lost is for the final checks.
 */
import { connect, type Sql } from '../lib/db.ts';
import type { SoakDisk } from './disk.ts';
import type { CutRequest, Ledger, Producers } from './producers.ts';
import { reachable, type SoakServer } from './server.ts';

export interface FaultResult {
  fault: string;
  /** Seconds into the soak when it struck; null when it never could. */
  at: number | null;
  injected: boolean;
  /** When it struck (the server runs on this machine: the same clock). */
  atDate: Date | null;
  /** When the fault was cleared: a tick that starts after it shows the pipeline is back. */
  recoverFrom: Date | null;
  /** Seconds from the fault until a tick that started after it finished; null: none did. */
  recovered: number | null;
  figures: string;
  /** The struck pg_cron job's backend: its cron.job_run_details row is read at the end. */
  jobPid?: number;
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
  disk: SoakDisk;
  /** Reprocessed windows: their rows' latency includes the wait for the reprocess. */
  reprocessed: { after: Date; before: Date }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const n = (x: number) => x.toLocaleString('en-US');

export interface Tick {
  pid: number;
  /** The pg_cron job's command, as pg_stat_activity showed it. */
  query: string;
  /** Seconds the backend had been inside the CALL when it was struck. */
  inCall: number;
  /** What it was waiting on (the soak's lock). */
  waiting: string;
  /** Its spectrum.pipeline_runs row (committed before the first claim). */
  runId: number | null;
}

/**
 * The soak's way to catch a tick mid-run however fast ticks are: a connection holds an EXCLUSIVE
 * lock on spectrum.event_registry, the first table a batch writes after claiming its rows, so
 * the next tick's backend stops inside the CALL, its batch claimed, until the lock goes.
 * pg_stat_activity shows the backend active in the CALL and blocked by the holder; that is what
 * `caught` returns. No pg_sleep, nothing of the pipeline changed.
 */
export async function holdTick(ctx: FaultContext) {
  const holder = connect(ctx.server.url, {
    max: 1,
    connection: { application_name: 'soak-lock' },
  });
  const h = await holder.reserve();
  await h`begin`;
  await h`lock table spectrum.event_registry in exclusive mode`;
  const [{ pid: holderPid }] = (await h`select pg_catalog.pg_backend_pid() as pid`) as unknown as [
    { pid: number },
  ];
  const since = Date.now();
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    // A connection that died with the server never answers: bounded waits.
    await Promise.race([h`rollback`.catch(() => {}), sleep(2000)]);
    try {
      h.release();
    } catch {
      // The connection died with the server.
    }
    await Promise.race([holder.end({ timeout: 0 }).catch(() => {}), sleep(2000)]);
  };
  /** Waits up to `seconds` for a tick's backend to block on the lock inside the CALL. */
  const caught = async (seconds: number): Promise<Tick | null> => {
    const until = performance.now() + seconds * 1000;
    while (performance.now() < until) {
      const [t] = await ctx.admin<
        { pid: number; query: string; in_call: number; waiting: string; run_id: number | null }[]
      >`
        select a.pid, a.query,
               extract(epoch from pg_catalog.clock_timestamp() - a.query_start)::float8 as in_call,
               a.wait_event_type || '/' || a.wait_event as waiting,
               (select run_id::int from spectrum.pipeline_runs p
                 where p.finished_at is null and p.started_at >= a.query_start
                 order by run_id desc limit 1) as run_id
          from pg_catalog.pg_stat_activity a
         where a.backend_type = 'pg_cron' and a.state = 'active' and a.query ilike 'call %'
           and ${holderPid}::int = any (pg_catalog.pg_blocking_pids(a.pid))
         order by a.query_start
         limit 1`;
      if (t)
        return {
          pid: t.pid,
          query: t.query,
          inCall: t.in_call,
          waiting: t.waiting,
          runId: t.run_id,
        };
      await sleep(50);
    }
    return null;
  };
  return { caught, release, since };
}

/** How long a fault waits for a tick to start: the next slot of the schedule and some. */
// After a restart pg_cron starts jobs again only at the next minute.
const catchWithin = (ctx: FaultContext) => Math.max(ctx.tickSeconds, 60) + 15;

const describe = (t: Tick) =>
  `pg_stat_activity: pid ${t.pid} active in \`${t.query.trim()}\` for ` +
  `${t.inCall.toFixed(1)} s, waiting on ${t.waiting} behind the soak's lock, run ` +
  `${t.runId ?? '?'} started`;

async function runRow(sql: Sql, runId: number | null) {
  if (runId === null) return null;
  const [r] = await sql<{ finished: boolean; batches: number; claimed: number }[]>`
    select finished_at is not null as finished, batches, claimed::int
      from spectrum.pipeline_runs where run_id = ${runId}`;
  return r ?? null;
}

const runState = (run: { finished: boolean; batches: number } | null) =>
  run === null
    ? 'no run row'
    : run.finished
      ? 'finished'
      : `left unfinished after ${run.batches} committed batches (its claimed rows pending again)`;

async function crash(ctx: FaultContext): Promise<FaultResult> {
  const name = 'server crash mid-tick (pg_ctl stop -m immediate)';
  const sent = ctx.ledger.sends.length;
  const hold = await holdTick(ctx);
  const tick = await hold.caught(catchWithin(ctx));
  if (!tick) {
    await hold.release();
    return notInjected(name, ctx);
  }
  await sleep(ctx.random() * 1000);
  const at = ctx.clock();
  const atDate = new Date();
  const times = await ctx.server.crashAndRestart(2);
  await hold.release();
  await reachable(ctx.admin);
  const recoverFrom = new Date();
  const run = await runRow(ctx.admin, tick.runId);
  const lost = ctx.ledger.sends.slice(sent).filter((s) => s.outcome === 'refused');
  await sleep(2000);
  return {
    fault: name,
    at,
    atDate,
    recoverFrom,
    injected: true,
    recovered: null,
    figures:
      `${describe(tick)}; run ${runState(run)}; stop ${times.stop.toFixed(1)} s, down 2 s, ` +
      `start with crash recovery ${times.start.toFixed(1)} s; ${n(lost.length)} sends ` +
      `(${n(lost.reduce((k, s) => k + s.count, 0))} rows) not told committed meanwhile, sent again`,
  };
}

async function signal(ctx: FaultContext, how: 'cancel' | 'terminate'): Promise<FaultResult> {
  const what =
    how === 'cancel' ? 'cancelled (pg_cancel_backend)' : 'terminated (pg_terminate_backend)';
  const name = `tick's backend ${what}`;
  const hold = await holdTick(ctx);
  const tick = await hold.caught(catchWithin(ctx));
  if (!tick) {
    await hold.release();
    return notInjected(name, ctx);
  }
  await sleep(ctx.random() * 1000);
  const at = ctx.clock();
  const atDate = new Date();
  const [{ ok }] = (how === 'cancel'
    ? await ctx.admin`select pg_catalog.pg_cancel_backend(${tick.pid}) as ok`
    : await ctx.admin`select pg_catalog.pg_terminate_backend(${tick.pid}) as ok`) as unknown as [
    { ok: boolean },
  ];
  await sleep(500);
  await hold.release();
  const recoverFrom = new Date();
  await sleep(500);
  const run = await runRow(ctx.admin, tick.runId);
  return {
    fault: name,
    at,
    atDate,
    recoverFrom,
    injected: ok,
    recovered: null,
    jobPid: tick.pid,
    figures: `${describe(tick)}; run ${runState(run)}`,
  };
}

async function overlap(ctx: FaultContext): Promise<FaultResult> {
  const name = 'maintenance overlapping a tick and a reprocess';
  const hold = await holdTick(ctx);
  const tick = await hold.caught(catchWithin(ctx));
  if (!tick) {
    await hold.release();
    return notInjected(name, ctx);
  }
  const at = ctx.clock();
  const atDate = new Date();
  const maint = connect(ctx.server.url, {
    max: 1,
    connection: { application_name: 'soak-maintenance' },
  });
  const operator = connect(ctx.server.urlAs('soak_operator'), {
    max: 1,
    connection: { application_name: 'soak-reprocess' },
  });
  try {
    // The window of the newest tick's worth of processed events: re-queued while the tick runs.
    const [{ hi }] = (await ctx.admin`
      select coalesce(max(received_at), pg_catalog.clock_timestamp()) as hi
        from spectrum.raw_events where status = 'done'`) as unknown as [{ hi: Date }];
    const before = new Date(hi.getTime() + 1);
    const after = new Date(hi.getTime() - ctx.tickSeconds * 1000);
    ctx.reprocessed.push({ after, before });
    const timed = async <T>(p: Promise<T>) => {
      const from = ctx.clock();
      const v = await p;
      return { v, from, to: ctx.clock() };
    };
    const [m, rp] = await Promise.all([
      timed(maint`call spectrum.maintenance()`),
      timed(operator<{ n: number }[]>`
        select spectrum.reprocess(received_after => ${after}, received_before => ${before})::int
               as n`),
    ]);
    // Both ran from start to end while the tick was inside its CALL, its batch claimed.
    const still = await hold.caught(0.001);
    await sleep(ctx.random() * 700);
    await hold.release();
    const recoverFrom = new Date();
    const [run] = await ctx.admin<{ partitions: number; note: string | null }[]>`
      select partitions_created as partitions, note from spectrum.maintenance_runs
       order by run_id desc limit 1`;
    await sleep(1000);
    const tickRun = await runRow(ctx.admin, tick.runId);
    const span = (x: { from: number; to: number }) => `+${x.from.toFixed(1)}–${x.to.toFixed(1)} s`;
    return {
      fault: name,
      at,
      atDate,
      recoverFrom,
      injected: still?.pid === tick.pid,
      recovered: null,
      figures:
        `${describe(tick)}; maintenance ${span(m)} (partitions created ` +
        `${run?.partitions ?? '?'}${run?.note ? `, ${run.note}` : ''}) and a reprocess of one ` +
        `tick's window ${span(rp)}, ${n(rp.v[0]!.n)} rows re-queued; the tick ` +
        `${
          still?.pid === tick.pid
            ? `was still in its CALL after both (pg_stat_activity, +${ctx.clock().toFixed(1)} s)`
            : 'had left its CALL'
        }; ` +
        `run ${tick.runId} ${tickRun?.finished ? 'then finished normally' : 'still running 1 s after'}`,
    };
  } finally {
    await hold.release();
    await maint.end({ timeout: 1 });
    await operator.end({ timeout: 1 });
  }
}

async function copyCut(ctx: FaultContext): Promise<FaultResult> {
  const name = "producer's connection cut mid-COPY";
  for (let attempt = 0; attempt < 3; attempt++) {
    const producer = 1 + Math.floor(ctx.random() * ctx.producers.count);
    const request: CutRequest = { producer, rows: 3000 };
    ctx.producers.cutRequest = request;
    let struck: { at: number; atDate: Date; rows: number; bytes: number } | null = null;
    const until = performance.now() + 20_000;
    while (!request.outcome && performance.now() < until) {
      const [p] = await ctx.admin<{ pid: number; rows: number; bytes: number }[]>`
        select c.pid, c.tuples_processed::int as rows, c.bytes_processed::float8 as bytes
          from pg_catalog.pg_stat_progress_copy c
          join pg_catalog.pg_stat_activity a using (pid)
         where a.application_name = ${`soak-producer-${producer}`} and c.tuples_processed > 0`;
      if (p && !struck) {
        await sleep(ctx.random() * 500);
        struck = { at: ctx.clock(), atDate: new Date(), rows: p.rows, bytes: p.bytes };
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
        atDate: struck.atDate,
        recoverFrom: struck.atDate,
        injected: true,
        recovered: null,
        figures:
          `producer ${producer}'s COPY of ${n(send.count)} rows: backend terminated after the ` +
          `server had read ${n(struck.rows)} rows; the client got ${send.code}; none may appear ` +
          `(soak_seq ${send.first}–${send.first + send.count - 1}), the events sent again`,
      };
  }
  return notInjected(name, ctx, 'no COPY was caught in progress, three times');
}

async function diskFull(ctx: FaultContext): Promise<FaultResult> {
  const name = "raw_events' disk full";
  const disk = ctx.disk;
  // Little room: the free space inside raw_events' pages (left by vacuum) fills first.
  const room = 256 * 1024;
  const at = ctx.clock();
  const atDate = new Date();
  const first = ctx.ledger.sends.length;
  const left = await disk.fill(room);
  const full = () => ctx.ledger.sends.slice(first).find((s) => s.code === '53100');
  const until = performance.now() + (2 * ctx.tickSeconds + 90) * 1000;
  while (!full() && performance.now() < until) await sleep(100);
  const hit = full();
  if (hit) await sleep(3000 + ctx.random() * 3000);
  const fullFor = ctx.clock() - (hit?.at ?? at);
  await disk.grow();
  const recoverFrom = new Date();
  const [tick] = await ctx.admin<{ status: string; message: string }[]>`
    select status, return_message as message from cron.job_run_details
     where status = 'failed' and start_time >= ${atDate} and return_message like '%space%'
     order by runid desc limit 1`;
  const refused = ctx.ledger.sends
    .slice(first)
    .filter((s) => s.outcome === 'refused' && s.code === '53100');
  return {
    fault: name,
    at,
    atDate,
    recoverFrom,
    injected: Boolean(hit),
    recovered: null,
    figures:
      `${disk.describe}: ${(left / 2 ** 20).toFixed(1)} MB left free; inserts refused ` +
      `(53100) ${hit ? `from +${(hit.at - at).toFixed(1)} s` : 'never'}, for ` +
      `${fullFor.toFixed(1)} s: ${n(refused.length)} sends ` +
      `(${n(refused.reduce((k, s) => k + s.count, 0))} rows) refused, sent again after the ` +
      `disk grew; ${
        tick
          ? `a tick failed on it too ("${tick.message.trim().split('\n')[0]}")`
          : 'no tick failed on it'
      }`,
  };
}

function notInjected(fault: string, ctx: FaultContext, why?: string): FaultResult {
  return {
    fault,
    at: null,
    atDate: null,
    recoverFrom: null,
    injected: false,
    recovered: null,
    figures: why ?? `no tick blocked on the soak's lock within ${catchWithin(ctx)} s`,
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

/**
 * Each fault's "next tick done after": from the fault to the end of the first tick that started
 * once the fault was cleared (server restarted, lock released, disk grown), from
 * spectrum.pipeline_runs after the final tick.
 */
export async function recoveries(sql: Sql, results: FaultResult[]): Promise<void> {
  for (const r of results) {
    if (!r.recoverFrom || !r.atDate) continue;
    const [row] = await sql<{ finished: Date }[]>`
      select finished_at as finished from spectrum.pipeline_runs
       where started_at > ${r.recoverFrom} and finished_at is not null
       order by started_at limit 1`;
    if (row) r.recovered = (row.finished.getTime() - r.atDate.getTime()) / 1000;
    if (r.jobPid === undefined) continue;
    const [job] = await sql<{ status: string; message: string | null }[]>`
      select status, return_message as message from cron.job_run_details
       where job_pid = ${r.jobPid} order by runid desc limit 1`;
    r.figures +=
      `; its cron.job_run_details row at the end: ` +
      (job ? `${job.status}, "${(job.message ?? '').trim().split('\n')[0]}"` : 'none');
  }
}

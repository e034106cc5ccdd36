/*
 * The soak's own throwaway cluster: pg_cron runs from the pipeline's database `soak`, the
 * pipeline migrated into it, producer and operator login roles, the real tick scheduled. It
 * can be crashed (pg_ctl stop -m immediate) and started again on the same port, and it says
 * how much CPU its processes have used, restarts included.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  startCluster,
  stopCluster,
  throwawayCluster,
  type ThrowawayCluster,
} from '../lib/cluster.ts';
import { connect, type Sql } from '../lib/db.ts';
import { migrateWorkingTree } from '../lib/migrate.ts';
import { applySchedule, readSchedule, type Job } from '../lib/schedule.ts';

export const DATABASE = 'soak';

/*
 * Production-like: durability on (fsync, synchronous_commit, full_page_writes), autovacuum on
 * with its defaults, since whether it keeps up is one of the questions.
 */
const SOAK_CONF = [`shared_buffers = '512MB'`, `max_wal_size = '4GB'`];

/* The stand-in for pg_cron's interval schedules (1.5+) on pg_cron 1.4: see tickJobs. */
const SOAK_SCHEMA = `
  create schema if not exists soak;
  create or replace procedure soak.tick_after(p_delay interval)
  language plpgsql
  as $$
  begin
    perform pg_catalog.pg_sleep_for(p_delay);
    commit;
    call spectrum.process_pending();
  end
  $$;
  comment on procedure soak.tick_after(interval) is
    'The soak''s sub-minute tick on pg_cron 1.4: waits p_delay into the minute, then runs the tick.';
  do $$ begin
    create role soak_producer login;
    create role soak_operator login;
  exception when duplicate_object then null;
  end $$;
  grant spectrum_producer to soak_producer;
  grant spectrum_operator to soak_operator;
`;

export interface SoakServer {
  cluster: ThrowawayCluster;
  /** A superuser connection string to the pipeline's database. */
  url: string;
  /** The same database as another login role. */
  urlAs(role: 'soak_producer' | 'soak_operator'): string;
  /** The tick's pg_cron jobs, as scheduled. */
  jobs: Job[];
  /** How the tick is scheduled, in words. */
  tickSchedule: string;
  /** pg_ctl stop -m immediate, then start again; the seconds each took. */
  crashAndRestart(downSeconds: number): Promise<{ stop: number; start: number }>;
  /** CPU seconds used by the server's processes since it was first started. */
  cpuSeconds(): number;
}

/**
 * The tick as pg_cron jobs. Minutes are cron syntax (`* * * * *`, `*\/5 * * * *`); seconds are
 * pg_cron 1.5's interval schedule (`20 seconds`) when the server has it, else one job per slot
 * of the minute, each `* * * * *`, that waits its offset in soak.tick_after and then runs the
 * same CALL. The maintenance job of sql/schedule.json is kept as it is.
 */
export function tickJobs(tickSeconds: number, cronVersion: string): Job[] {
  const tick = 'CALL spectrum.process_pending()';
  const maintenance = readSchedule().filter((j) => j.name === 'spectrum.maintenance');
  if (tickSeconds >= 60) {
    const m = tickSeconds / 60;
    const schedule = m === 1 ? '* * * * *' : `*/${m} * * * *`;
    return [{ name: 'spectrum.process_pending', schedule, command: tick }, ...maintenance];
  }
  const [major, minor] = cronVersion.split(/[.-]/).map(Number);
  if (major! > 1 || (major === 1 && minor! >= 5))
    return [
      { name: 'spectrum.process_pending', schedule: `${tickSeconds} seconds`, command: tick },
      ...maintenance,
    ];
  const slots = Array.from({ length: 60 / tickSeconds }, (_, k) => k * tickSeconds);
  return [
    ...slots.map((offset) => ({
      name: offset ? `spectrum.process_pending+${offset}s` : 'spectrum.process_pending',
      schedule: '* * * * *',
      command: offset ? `CALL soak.tick_after('${offset} seconds')` : tick,
    })),
    ...maintenance,
  ];
}

/** utime + stime (+ reaped children's) of /proc/<pid>/stat, in clock ticks. */
function procTicks(pid: number, children: boolean): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the name, from state (3): utime 14, stime 15, cutime 16, cstime 17.
    const t = Number(f[11]) + Number(f[12]);
    return children ? t + Number(f[13]) + Number(f[14]) : t;
  } catch {
    return 0;
  }
}

function serverTicks(dataDir: string): number {
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return 0;
  }
  let total = procTicks(postmaster, true);
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmaster) total += procTicks(Number(name), false);
    } catch {
      // The process ended while we read.
    }
  }
  return total;
}

const CLOCK_TICKS = 100;

export async function startSoakServer(
  tickSeconds: number,
  log: (line: string) => void,
): Promise<SoakServer> {
  const cluster = await throwawayCluster({
    prefix: 'spectrum-soak-',
    parent: process.env.SPECTRUM_SOAK_DIR,
    cronDatabase: DATABASE,
    extraConf: SOAK_CONF,
  });
  try {
    const admin = connect(cluster.url('postgres'), { max: 1 });
    await admin.unsafe(`create database ${DATABASE}`);
    await admin.end();
    const url = cluster.url(DATABASE);
    await migrateWorkingTree(url);
    const sql = connect(url, { max: 1 });
    let jobs: Job[];
    try {
      await sql.unsafe(SOAK_SCHEMA);
      const [v] = await sql<{ v: string }[]>`
        select extversion as v from pg_catalog.pg_extension where extname = 'pg_cron'`;
      jobs = tickJobs(tickSeconds, v!.v);
      await applySchedule(url, jobs, () => {});
    } finally {
      await sql.end();
    }
    const ticks = jobs.filter((j) => j.name.startsWith('spectrum.process_pending'));
    const tickSchedule =
      ticks.length === 1
        ? `'${ticks[0]!.schedule}'`
        : `${ticks.length} jobs '* * * * *', ${tickSeconds} s apart (pg_cron 1.4 has no ` +
          `interval schedules)`;
    log(
      `soak cluster: 127.0.0.1:${cluster.port}, data in ${cluster.dataDir} (removed at the end); ` +
        `tick ${tickSchedule}`,
    );
    let offset = 0;
    let last = 0;
    const cpuSeconds = () => {
      const now = serverTicks(cluster.dataDir);
      if (now > 0) last = now;
      return (offset + last) / CLOCK_TICKS;
    };
    const crashAndRestart = async (downSeconds: number) => {
      cpuSeconds();
      let t = performance.now();
      stopCluster(cluster.dataDir, 'immediate');
      const stop = (performance.now() - t) / 1000;
      offset += last;
      last = 0;
      await new Promise((r) => setTimeout(r, downSeconds * 1000));
      t = performance.now();
      await startCluster({
        dataDir: cluster.dataDir,
        port: cluster.port,
        cronDatabase: DATABASE,
      });
      return { stop, start: (performance.now() - t) / 1000 };
    };
    const urlAs = (role: string) => {
      const u = new URL(url);
      u.username = role;
      return u.toString();
    };
    return { cluster, url, urlAs, jobs, tickSchedule, crashAndRestart, cpuSeconds };
  } catch (e) {
    cluster.remove();
    throw e;
  }
}

/** Polls until the server answers again (after a restart). */
export async function reachable(sql: Sql, seconds = 60): Promise<void> {
  for (let i = 0; i < seconds * 5; i++) {
    try {
      await sql`select 1`;
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`the soak server did not answer within ${seconds} s`);
}

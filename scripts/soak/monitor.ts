/*
 * The live report: one line per finished tick (a spectrum.pipeline_runs row that got its
 * finished_at), with the backlog, the oldest pending event's age, events in and done per second
 * since the line before, the sizes and dead tuples of raw_events and the facts, and the
 * server's CPU. A query that fails (the server is down) is skipped; the next poll tries again.
 */
import { loadavg } from 'node:os';
import type { Sql } from '../lib/db.ts';
import type { Ledger } from './producers.ts';

export interface Sample {
  at: number;
  runId: number | null;
  took: number | null;
  claimed: number;
  backlog: number;
  oldest: number | null;
  inPerSecond: number;
  donePerSecond: number;
  rawBytes: number;
  rawLive: number;
  rawDead: number;
  rawVacuums: number;
  factBytes: number;
  factLive: number;
  factDead: number;
  factVacuums: number;
  cpu: number;
  /** The machine's 1-minute load average (others' work included). */
  load: number;
}

export async function measure(sql: Sql) {
  const [row] = await sql<
    {
      backlog: number;
      oldest: number | null;
      raw_bytes: number;
      raw_live: number;
      raw_dead: number;
      raw_vacuums: number;
      fact_bytes: number;
      fact_live: number;
      fact_dead: number;
      fact_vacuums: number;
    }[]
  >`
    with facts as (select relid from pg_catalog.pg_partition_tree('spectrum.fact_events')),
         pending as (select events, oldest_received_at from spectrum.pipeline_status
                      where status = 'pending')
    select coalesce((select events from pending), 0)::float8 as backlog,
           extract(epoch from pg_catalog.clock_timestamp()
                              - (select oldest_received_at from pending))::float8 as oldest,
           pg_catalog.pg_total_relation_size('spectrum.raw_events')::float8 as raw_bytes,
           s.n_live_tup::float8 as raw_live, s.n_dead_tup::float8 as raw_dead,
           s.autovacuum_count::float8 as raw_vacuums,
           (select sum(pg_catalog.pg_total_relation_size(relid)) from facts)::float8 as fact_bytes,
           f.live::float8 as fact_live, f.dead::float8 as fact_dead,
           f.vacuums::float8 as fact_vacuums
      from pg_catalog.pg_stat_user_tables s,
           (select coalesce(sum(n_live_tup), 0) as live, coalesce(sum(n_dead_tup), 0) as dead,
                   coalesce(sum(autovacuum_count), 0) as vacuums
              from pg_catalog.pg_stat_user_tables where relid in (select relid from facts)) f
     where s.relid = 'spectrum.raw_events'::regclass`;
  return row!;
}

const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`;
const fixed = (n: number, w: number, d = 0) => n.toFixed(d).padStart(w);

export const HEADER =
  '   time   run  took s  claimed  backlog  oldest s   in/s  done/s  raw_events (dead)' +
  '        facts (dead)   cpu';

export function line(s: Sample): string {
  const t = `${String(Math.floor(s.at / 60)).padStart(4)}:${String(Math.floor(s.at % 60)).padStart(2, '0')}`;
  return [
    t,
    fixed(s.runId ?? 0, 5),
    s.took === null ? '      -' : fixed(s.took, 7, 2),
    fixed(s.claimed, 8),
    fixed(s.backlog, 8),
    s.oldest === null ? '        -' : fixed(s.oldest, 9, 1),
    fixed(s.inPerSecond, 6),
    fixed(s.donePerSecond, 7),
    `${mb(s.rawBytes).padStart(10)} (${fixed(s.rawDead, 7)})`,
    `${mb(s.factBytes).padStart(9)} (${fixed(s.factDead, 7)})`,
    `${fixed(s.cpu, 4)}%`,
  ].join(' ');
}

export class Monitor {
  readonly samples: Sample[] = [];
  private lastRun = 0;
  private prev: { at: number; rows: number; cpu: number };
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(
    private sql: Sql,
    private ledger: Ledger,
    private clock: () => number,
    private cpuSeconds: () => number,
    private cores: number,
    private log: (line: string) => void,
  ) {
    this.prev = { at: clock(), rows: 0, cpu: cpuSeconds() };
  }

  start(): void {
    this.log(HEADER);
    this.timer = setInterval(() => void this.poll(), 1000);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private committedRows(): number {
    let n = 0;
    for (const s of this.ledger.sends) if (s.outcome === 'committed') n += s.count;
    return n;
  }

  /** Prints a line per run finished since the last poll (one sample for all of them). */
  async poll(force = false): Promise<Sample | null> {
    if (this.busy) return null;
    this.busy = true;
    try {
      const runs = await this.sql<
        { run_id: number; took: number; claimed: number; done: number }[]
      >`
        select run_id::int, extract(epoch from finished_at - started_at)::float8 as took,
               claimed::int, (done + failed)::int as done
          from spectrum.pipeline_runs
         where run_id > ${this.lastRun} and finished_at is not null
         order by run_id`;
      if (runs.length === 0 && !force) return null;
      const m = await measure(this.sql);
      const at = this.clock();
      const rows = this.committedRows();
      const cpu = this.cpuSeconds();
      const dt = Math.max(at - this.prev.at, 0.001);
      const last = runs.at(-1);
      const s: Sample = {
        at,
        runId: last?.run_id ?? null,
        took: last?.took ?? null,
        claimed: runs.reduce((n, r) => n + r.claimed, 0),
        backlog: m.backlog,
        oldest: m.oldest,
        inPerSecond: (rows - this.prev.rows) / dt,
        donePerSecond: runs.reduce((n, r) => n + r.done, 0) / dt,
        rawBytes: m.raw_bytes,
        rawLive: m.raw_live,
        rawDead: m.raw_dead,
        rawVacuums: m.raw_vacuums,
        factBytes: m.fact_bytes,
        factLive: m.fact_live,
        factDead: m.fact_dead,
        factVacuums: m.fact_vacuums,
        cpu: ((cpu - this.prev.cpu) / dt / this.cores) * 100,
        load: loadavg()[0]!,
      };
      if (last) this.lastRun = last.run_id;
      this.prev = { at, rows, cpu };
      this.samples.push(s);
      this.log(line(s));
      return s;
    } catch {
      return null;
    } finally {
      this.busy = false;
    }
  }
}

/*
 * One timed contender: a fresh clone of a loaded template database, a checkpoint so that no
 * earlier write spills into the timing, then the contender's statement, timed from the
 * client. Around it: WAL bytes (pg_current_wal_lsn difference), the outcome (so that the
 * contenders can be checked to have done the same work) and, from pg_stat_statements, where
 * the time went.
 */
import { connect, type Sql } from '../lib/db.ts';
import { cloneDatabase, dropDatabase, type BenchServer } from './server.ts';

export interface Outcome {
  done: number;
  failed: number;
  pending: number;
  facts: number;
  accounts: number;
  users: number;
  places: number;
}

export interface Stage {
  query: string;
  calls: number;
  ms: number;
}

export interface Run {
  contender: string;
  events: number;
  seconds: number;
  walBytes: number;
  outcome: Outcome;
  /** Bytes (heap + indexes + toast) of the pipeline's tables after the run. */
  sizes: Record<string, number>;
  stages: Stage[];
}

export interface Contender {
  name: string;
  template: string;
  events: number;
  /** The timed statement(s), run on `sql`; `url` opens more connections to the same database. */
  run(sql: Sql, url: string): Promise<unknown>;
  /** Counts its work where it keeps it (default: the spectrum tables). */
  outcome?(sql: Sql): Promise<Outcome>;
}

const num = (v: unknown) => Number(v ?? 0);

/** Where a contender keeps its work: the tables its outcome is counted in. */
export interface OutcomeTables {
  raw: string;
  facts: string[];
  accounts: string;
  users: string;
  places: string;
}

/** The pipeline's own tables. */
export const PIPELINE_TABLES: OutcomeTables = {
  raw: 'spectrum.raw_events',
  facts: ['spectrum.fact_events'],
  accounts: 'spectrum.dim_accounts',
  users: 'spectrum.dim_users',
  places: 'spectrum.dim_geography',
};

/** The same, with the facts the bench's references write beside them. */
const SPECTRUM_TABLES: OutcomeTables = {
  ...PIPELINE_TABLES,
  facts: [...PIPELINE_TABLES.facts, 'bench.fact_bare'],
};

/**
 * The counts every contender must agree on, read from `t` (names written here, not input): one
 * statement per table, so that Citus plans each (it refuses a subquery in a target list).
 */
export async function countOutcome(sql: Sql, t: OutcomeTables = SPECTRUM_TABLES): Promise<Outcome> {
  const count = async (from: string) =>
    num((await sql.unsafe(`select count(*) as n from ${from}`))[0]!.n);
  const [raw] = await sql.unsafe(`
    select count(*) filter (where status = 'done') as done,
           count(*) filter (where status = 'failed') as failed,
           count(*) filter (where status in ('pending', 'processing')) as pending
      from ${t.raw}`);
  let facts = 0;
  for (const f of t.facts) facts += await count(f);
  return {
    done: num(raw!.done),
    failed: num(raw!.failed),
    pending: num(raw!.pending),
    facts,
    accounts: await count(t.accounts),
    users: await count(t.users),
    places: await count(t.places),
  };
}

export async function tableSizes(sql: Sql): Promise<Record<string, number>> {
  const rows = await sql<{ name: string; bytes: string }[]>`
    select t.name,
           case when c.relkind = 'p'
             then (select sum(pg_total_relation_size(p.relid)) from pg_partition_tree(c.oid) p)
                else pg_total_relation_size(c.oid) end as bytes
      from (values ('raw_events'), ('fact_events'), ('event_registry'), ('fact_bare'), ('raw_bare'),
          ('raw_bare_pk'), ('facts')) t(name)
      join pg_class c on c.oid = coalesce(to_regclass('spectrum.' || t.name),
                                 to_regclass('bench.' || t.name), to_regclass('bench_s.' || t.name))`;
  return Object.fromEntries(rows.map((r) => [r.name, num(r.bytes)]));
}

/** The statements inside the run (nested ones too: track = all), slowest first. */
async function stages(server: BenchServer, database: string): Promise<Stage[]> {
  const rows = await server.admin<{ query: string; calls: string; ms: number }[]>`
    select s.query, s.calls, s.total_exec_time as ms
      from pg_stat_statements s
      join pg_database d on d.oid = s.dbid
     where d.datname = ${database}
     order by s.total_exec_time desc
     limit 40`;
  return rows.map((r) => ({ query: r.query, calls: num(r.calls), ms: r.ms }));
}

export async function runContender(
  server: BenchServer,
  c: Contender,
  database = 'bench_run',
): Promise<Run> {
  const url = await cloneDatabase(server, c.template, database);
  const sql = connect(url, { max: 1 });
  try {
    await sql`set timezone = 'UTC'`;
    await sql`select 1 from spectrum.raw_events limit 1`;
    await server.admin`checkpoint`;
    await server.admin`select pg_stat_statements_reset()`;
    const [before] = await sql`select pg_current_wal_lsn() as lsn`;
    const started = performance.now();
    await c.run(sql, url);
    const seconds = (performance.now() - started) / 1000;
    const [wal] = await sql`select pg_wal_lsn_diff(pg_current_wal_lsn(), ${before!.lsn}) as bytes`;
    const st = await stages(server, database);
    return {
      contender: c.name,
      events: c.events,
      seconds,
      walBytes: num(wal!.bytes),
      outcome: await (c.outcome ?? countOutcome)(sql),
      sizes: await tableSizes(sql),
      stages: st,
    };
  } finally {
    await sql.end();
    await dropDatabase(server, database);
  }
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

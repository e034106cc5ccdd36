/*
 * Citus, when it is installed: detection, and a throwaway cluster of a coordinator and N workers
 * on free loopback ports for the tests and the benchmark, started the way the local cluster is
 * (scripts/lib/cluster.ts). The project never builds or ships Citus; it uses one that is there.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
// The tables hash-distributed by account, co-located (citus-rules.ts holds the whole map).
import { BY_ACCOUNT } from './citus-rules.ts';
import { throwawayCluster, type ThrowawayCluster } from './cluster.ts';
import { connect } from './db.ts';

const PG_LIB = process.env.SPECTRUM_PG_LIB ?? '/usr/lib/postgresql/15/lib';
const PG_SHARE = process.env.SPECTRUM_PG_SHARE ?? '/usr/share/postgresql/15';

/** Whether the citus extension is installed for the local PostgreSQL 15. */
export function citusInstalled(): boolean {
  return (
    existsSync(join(PG_LIB, 'citus.so')) && existsSync(join(PG_SHARE, 'extension', 'citus.control'))
  );
}

export interface CitusCluster {
  coordinator: ThrowawayCluster;
  workers: ThrowawayCluster[];
  /** Creates `database` on every node with citus (and pg_cron), workers registered. */
  createDatabase(database: string): Promise<string>;
  remove(): void;
}

/** Pins a running server (postmaster and its current children) to `cpu`; new backends inherit. */
function pin(dataDir: string, cpu: number) {
  const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  for (const p of [String(pid), ...children])
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), p], { stdio: 'ignore' });
}

/**
 * A coordinator and `workers` workers, each a throwaway cluster with citus and pg_cron preloaded
 * (pg_cron runs jobs from `cronDatabase` on every node). `pinWorkers` puts worker i on CPU i (mod
 * the CPU count) and the coordinator on the last CPU, so that a 1-worker against 2-worker ratio
 * means something on a small machine.
 */
export async function citusCluster(opts: {
  workers: number;
  cronDatabase: string;
  prefix?: string;
  pinWorkers?: boolean;
  extraConf?: string[];
}): Promise<CitusCluster> {
  const prefix = opts.prefix ?? 'spectrum-citus-';
  const extraConf = [
    `shared_preload_libraries = 'citus,pg_cron'`,
    // Citus commits a multi-node transaction in two phases.
    'max_prepared_transactions = 200',
    // One cached connection per worker made a batch of per-shard statements 3x slower.
    'citus.max_cached_conns_per_worker = 32',
    'wal_level = logical',
    ...(opts.extraConf ?? []),
  ];
  const nodes: ThrowawayCluster[] = [];
  const remove = () => {
    for (const n of nodes.reverse()) n.remove();
  };
  try {
    for (let i = 0; i <= opts.workers; i++)
      nodes.push(
        await throwawayCluster({
          prefix: `${prefix}${i === 0 ? 'coordinator' : `worker${i}`}-`,
          cronDatabase: opts.cronDatabase,
          extraConf,
        }),
      );
  } catch (e) {
    remove();
    throw e;
  }
  const [coordinator, ...workers] = nodes as [ThrowawayCluster, ...ThrowawayCluster[]];
  if (opts.pinWorkers) {
    const cpus = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
    workers.forEach((w, i) => pin(w.dataDir, i % cpus));
    pin(coordinator.dataDir, cpus - 1);
  }
  return {
    coordinator,
    workers,
    remove,
    async createDatabase(database: string) {
      for (const node of [coordinator, ...workers]) {
        const admin = connect(node.url('postgres'), { max: 1 });
        try {
          await admin.unsafe(`create database "${database}"`);
        } finally {
          await admin.end();
        }
        const db = connect(node.url(database), { max: 1 });
        try {
          await db`create extension citus`;
        } finally {
          await db.end();
        }
      }
      const db = connect(coordinator.url(database), { max: 1 });
      try {
        await db`select citus_set_coordinator_host('127.0.0.1', ${coordinator.port})`;
        for (const w of workers) await db`select citus_add_node('127.0.0.1', ${w.port})`;
      } finally {
        await db.end();
      }
      return coordinator.url(database);
    },
  };
}

const SHARDS = 32;

/**
 * What distribution changes first, while every table is still local (Citus refuses these on
 * distributed tables): docs/citus.md gives the reason for each.
 */
const PREPARE = [
  // Triggers cannot run on distributed tables, and these write a reference table from a shard.
  `do $$
   declare t record;
   begin
     for t in select tgname from pg_catalog.pg_trigger
               where tgrelid = 'spectrum.raw_events'::regclass and not tgisinternal loop
       execute pg_catalog.format('drop trigger %I on spectrum.raw_events', t.tgname);
     end loop;
   end $$`,
  // A distributed table's foreign key to a reference table forces every later statement of a
  // batch onto one connection per node; geo_id is a hash of the place, written in the same batch.
  `do $$
   declare c record;
   begin
     for c in select conname from pg_catalog.pg_constraint
               where conrelid = 'spectrum.fact_events'::regclass and contype = 'f'
                 and confrelid = 'spectrum.dim_geography'::regclass loop
       execute pg_catalog.format('alter table spectrum.fact_events drop constraint %I', c.conname);
     end loop;
   end $$`,
  // Unique keys must hold the distribution column: an event is known per account, on the node
  // that holds its fact.
  `alter table spectrum.event_registry drop constraint event_registry_pkey`,
  `alter table spectrum.event_registry
     add constraint event_registry_pkey primary key (account_id, event_id)`,
  `create index if not exists event_registry_event_id_idx on spectrum.event_registry (event_id)`,
  // raw_events' bucket is assigned at insert (on the coordinator, for INSERT and COPY): one
  // value per shard, so that a claim is a single-shard query and may skip locked rows.
  `create or replace function spectrum.raw_bucket() returns integer
   language sql volatile parallel safe as $$ select 0 $$`,
  `alter table spectrum.raw_events alter column bucket set default spectrum.raw_bucket()`,
  `alter table spectrum.raw_events drop constraint raw_events_pkey`,
  `alter table spectrum.raw_events add constraint raw_events_pkey primary key (bucket, id)`,
  `create index if not exists raw_events_id_idx on spectrum.raw_events (id)`,
  // Citus reaches the workers as the calling role: the security definer must be able to log in.
  `alter role spectrum_definer login`,
];

/**
 * Distributes a migrated database on a Citus coordinator: the tables of an account co-located
 * by account_id, raw_events by bucket, every other table of the schema a reference table.
 * Idempotent: a distributed database is left as it is.
 */
export async function distribute(
  url: string,
  log = console.log,
): Promise<'distributed' | 'already'> {
  const sql = connect(url, { max: 1 });
  try {
    const [state] = await sql<{ done: boolean }[]>`
      select exists (select from pg_dist_partition
                      where logicalrelid = 'spectrum.raw_events'::regclass) as done`;
    if (state!.done) return 'already';
    for (const statement of PREPARE) await sql.unsafe(statement);
    const [first, ...rest] = BY_ACCOUNT;
    await sql`select create_distributed_table(${'spectrum.' + first}, 'account_id',
                                              shard_count => ${SHARDS})`;
    for (const t of rest)
      await sql`select create_distributed_table(${'spectrum.' + t}, 'account_id',
                                                colocate_with => ${'spectrum.' + first})`;
    const others = await sql<{ name: string }[]>`
      select c.oid::regclass::text as name
        from pg_class c
       where c.relnamespace = 'spectrum'::regnamespace and c.relkind in ('r', 'p')
         and not c.relispartition
         and c.oid not in (select logicalrelid from pg_dist_partition)
         and c.relname <> 'raw_events'
       order by 1`;
    for (const { name } of others) await sql`select create_reference_table(${name})`;
    await sql`select create_distributed_table('spectrum.raw_events', 'bucket',
                                              shard_count => ${SHARDS}, colocate_with => 'none')`;
    // The smallest value that lands on each shard: the buckets producers' rows are spread over.
    const [row] = await sql<{ buckets: number[] }[]>`
      select array_agg(v order by v) as buckets
        from (select distinct on (s) v
                from generate_series(0, 100000) v,
                     get_shard_id_for_distribution_column('spectrum.raw_events', v) s
               order by s, v) one_per_shard`;
    const buckets = row!.buckets;
    await sql.unsafe(`
      create or replace function spectrum.raw_bucket() returns integer
      language sql volatile parallel safe as $$
        select ('{${buckets.join(',')}}'::integer[])
               [1 + pg_catalog.floor(pg_catalog.random() * ${buckets.length})::integer]
      $$`);
    await sql`insert into spectrum.raw_buckets (bucket) select unnest(${buckets}::integer[])`;
    // A pending floor per bucket, from bucket 0's (every row distributed so far is in bucket 0).
    await sql`
      insert into spectrum.pending_floor (bucket, floor)
      select b, (select floor from spectrum.pending_floor where bucket = 0)
        from unnest(${buckets}::integer[]) b
      on conflict (bucket) do nothing`;
    log(
      `distributed: ${BY_ACCOUNT.join(', ')} by account_id (${SHARDS} shards), raw_events by ` +
        `bucket (${buckets.length} buckets), ${others.map((o) => o.name).join(', ')} as reference tables`,
    );
    return 'distributed';
  } finally {
    await sql.end();
  }
}

/*
 * The benchmark's own throwaway cluster: a temporary data directory, a free port, pg_cron and
 * pg_stat_statements preloaded. It is stopped and removed at the end, on error and on Ctrl-C,
 * so a benchmark never leaves a server or gigabytes behind.
 */
import { throwawayCluster, type Cluster } from '../lib/cluster.ts';
import { connect, withDatabase, type Sql } from '../lib/db.ts';
import { migrateWorkingTree } from '../lib/migrate.ts';

/*
 * Settings: production-like durability (fsync, synchronous_commit and full_page_writes stay
 * on), enough shared_buffers to hold 1M events, checkpoints spaced out so that one does not
 * land inside a timed contender, autovacuum off so that it never competes for the two cores
 * mid-measurement (the benchmark vacuums explicitly where a DBA's autovacuum would have).
 * extraConf lines come after the cluster's own shared_preload_libraries, so this one wins.
 */
const BENCH_CONF = [
  `shared_preload_libraries = 'pg_cron,pg_stat_statements'`,
  `pg_stat_statements.track = all`,
  `pg_stat_statements.max = 5000`,
  `shared_buffers = '2GB'`,
  `work_mem = '64MB'`,
  `maintenance_work_mem = '512MB'`,
  `max_wal_size = '16GB'`,
  `checkpoint_timeout = '1h'`,
  `autovacuum = off`,
];

export interface BenchServer {
  cluster: Cluster;
  admin: Sql;
  /** Removes the cluster; safe to call twice. */
  stop(): void;
}

export async function startBenchServer(log: (line: string) => void): Promise<BenchServer> {
  const cluster = await throwawayCluster({
    prefix: 'spectrum-bench-',
    parent: process.env.SPECTRUM_BENCH_DIR,
    extraConf: BENCH_CONF,
  });
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: stopping the benchmark cluster and removing ${cluster.dataDir}`);
    cluster.remove();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', cluster.remove);
  try {
    const admin = connect(cluster.url('postgres'), { max: 1 });
    await admin`create extension if not exists pg_stat_statements`;
    log(
      `benchmark cluster: 127.0.0.1:${cluster.port}, data in ${cluster.dataDir} (removed at the ` +
        `end)`,
    );
    return { cluster, admin, stop: cluster.remove };
  } catch (e) {
    cluster.remove();
    throw e;
  }
}

/**
 * Creates a database with the pipeline migrated into it, plus migrations/current.sql (work in
 * progress).
 */
export async function migratedDatabase(server: BenchServer, name: string): Promise<string> {
  await server.admin.unsafe(`drop database if exists ${name} with (force)`);
  await server.admin.unsafe(`create database ${name}`);
  const url = server.cluster.url(name);
  await migrateWorkingTree(url);
  return url;
}

/**
 * A fresh copy of a loaded template database, so that every contender starts from the same state.
 */
export async function cloneDatabase(
  server: BenchServer,
  template: string,
  name: string,
): Promise<string> {
  await server.admin.unsafe(`drop database if exists ${name} with (force)`);
  await server.admin.unsafe(`create database ${name} template ${template} strategy file_copy`);
  return withDatabase(server.cluster.url('postgres'), name);
}

export async function dropDatabase(server: BenchServer, name: string): Promise<void> {
  await server.admin.unsafe(`drop database if exists ${name} with (force)`);
}

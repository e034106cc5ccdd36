/*
 * The PostgreSQL server the suite runs against, in order of preference:
 *   1. SPECTRUM_TEST_DATABASE_URL: an existing server (pg_cron preloaded for full coverage);
 *   2. a container (testcontainers) when a container runtime answers: PostgreSQL 15 with
 *      pg_cron, built from test/container/Dockerfile;
 *   3. a throwaway local cluster on a free port, removed afterwards (what runs on a machine
 *      without a container engine).
 */
import { join } from 'node:path';
import { ensurePackages, throwawayCluster } from '../../scripts/lib/cluster.ts';
import { withDatabase } from '../../scripts/lib/db.ts';
import { projectRoot } from '../../scripts/lib/paths.ts';

export interface TestServer {
  kind: 'existing' | 'container' | 'local';
  /** A superuser connection string to the server's `postgres` database. */
  adminUrl: string;
  stop(): Promise<void>;
}

async function containerRuntimeAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const client = await Promise.race([
      getContainerRuntimeClient(),
      new Promise<never>((_, fail) => setTimeout(() => fail(new Error('timeout')), 5000)),
    ]);
    return Boolean(client);
  } catch {
    return false;
  }
}

async function containerServer(): Promise<TestServer> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const image = await GenericContainer.fromDockerfile(join(projectRoot, 'test', 'container')).build(
    'spectrum-pg15-cron',
    { deleteOnExit: false },
  );
  const container = await image
    .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
    .withExposedPorts(5432)
    .withCommand([
      'postgres',
      '-c',
      'shared_preload_libraries=pg_cron',
      '-c',
      'cron.database_name=postgres',
      '-c',
      'cron.use_background_workers=on',
      '-c',
      'max_worker_processes=32',
      '-c',
      'max_connections=200',
    ])
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  const address = `${container.getHost()}:${container.getMappedPort(5432)}`;
  return {
    kind: 'container',
    adminUrl: `postgres://postgres@${address}/postgres`,
    stop: async () => void (await container.stop()),
  };
}

async function localServer(): Promise<TestServer> {
  ensurePackages(['postgresql-15-plpgsql-check']);
  const cluster = await throwawayCluster({
    prefix: 'spectrum-test-',
    extraConf: ['fsync = off', 'synchronous_commit = off', 'full_page_writes = off'],
  });
  return { kind: 'local', adminUrl: cluster.url('postgres'), stop: async () => cluster.remove() };
}

export async function provisionServer(): Promise<TestServer> {
  const existing = process.env.SPECTRUM_TEST_DATABASE_URL;
  if (existing)
    return { kind: 'existing', adminUrl: withDatabase(existing, 'postgres'), stop: async () => {} };
  if (await containerRuntimeAnswers()) return containerServer();
  return localServer();
}

/** A cluster of the test's own, for tests that kill backends or restart the server. */
export async function privateCluster(opts: { cronDatabase?: string; preloadCron?: boolean } = {}) {
  // Not synchronous_commit = off: a crash restart would lose commits still in WAL buffers.
  const extraConf = ['fsync = off'];
  if (opts.preloadCron === false) extraConf.push(`shared_preload_libraries = ''`);
  const cluster = await throwawayCluster({
    prefix: 'spectrum-private-',
    cronDatabase: opts.cronDatabase,
    extraConf,
  });
  return { ...cluster, stop: cluster.remove };
}

/*
 * The PostgreSQL server the suite runs against, in order of preference:
 *   1. SPECTRUM_TEST_DATABASE_URL: an existing server (pg_cron preloaded for full coverage);
 *   2. a container (testcontainers) when a container runtime answers: PostgreSQL 15 with
 *      pg_cron, built from test/container/Dockerfile, published on 127.0.0.1 only;
 *   3. a throwaway local cluster on a free port, removed afterwards.
 * The container path never fails the suite: any error reaching the runtime, building the
 * image or starting the container is reported in one line and the local cluster is used.
 * SPECTRUM_TEST_CONTAINER=1 makes the container path mandatory (an error then fails the run,
 * `npm run test:container`); SPECTRUM_TEST_CONTAINER=0 skips it.
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

export const containerImage = 'spectrum-pg15-cron';
/** The image test/container/Dockerfile starts FROM; base-image.sh builds it without a registry. */
const baseImage = 'debian:bookworm-slim';
const minutes = 60_000;

/** Rejects after `ms`; the abandoned promise's own rejection is swallowed, not left unhandled. */
function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  work.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what} took more than ${ms / 1000} s`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

async function containerServer(context: string): Promise<TestServer> {
  // The reaper is an image pulled from a registry; the suite removes its container itself.
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
  // The port is published on 127.0.0.1 only; this also keeps testcontainers from probing a
  // gateway (with a helper image) when the suite itself runs inside a container.
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';
  const { GenericContainer, Wait, getContainerRuntimeClient } = await import('testcontainers');
  const client = await within(
    10_000,
    'reaching the container runtime',
    getContainerRuntimeClient(),
  ).catch((e: Error) => {
    throw new Error(`no container runtime answers (${e.message})`);
  });
  const docker = client.container.dockerode;

  const hasBase = await docker
    .getImage(baseImage)
    .inspect()
    .then(() => true)
    .catch(() => false);
  // Built through the engine's API directly: an error line in the build output is an error.
  const build = async () => {
    const stream = await docker.buildImage({ context, src: ['Dockerfile'] }, { t: containerImage });
    const output = await new Promise<{ error?: string }[]>((done, fail) =>
      docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) =>
        err ? fail(err) : done(out),
      ),
    );
    const failed = output.find((line) => line.error);
    if (failed) throw new Error(`image build failed: ${failed.error}`);
    const built = await docker
      .getImage(containerImage)
      .inspect()
      .catch(() => null);
    if (!built) throw new Error(`image build failed: no ${containerImage} image afterwards`);
  };
  try {
    await within(15 * minutes, 'building the image', build());
  } catch (e) {
    if (hasBase) throw e;
    const hint = `${baseImage} is not in the engine: test/container/base-image.sh builds it`;
    throw new Error(`${(e as Error).message.split('\n')[0]} (${hint})`);
  }

  class LoopbackContainer extends GenericContainer {
    publishOnLoopback(port: number): this {
      this.withExposedPorts(port);
      this.hostConfig.PortBindings = { [`${port}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '0' }] };
      return this;
    }
  }
  const container = await new LoopbackContainer(containerImage)
    .publishOnLoopback(5432)
    .withLabels({ 'spectrum-pipeline': 'test-server' })
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/))
    .withStartupTimeout(2 * minutes)
    .start();
  return {
    kind: 'container',
    adminUrl: `postgres://postgres@127.0.0.1:${container.getMappedPort(5432)}/postgres`,
    stop: async () => void (await container.stop({ remove: true })),
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

export async function provisionServer(
  opts: { containerContext?: string } = {},
): Promise<TestServer> {
  const existing = process.env.SPECTRUM_TEST_DATABASE_URL;
  if (existing)
    return { kind: 'existing', adminUrl: withDatabase(existing, 'postgres'), stop: async () => {} };
  const mode = process.env.SPECTRUM_TEST_CONTAINER;
  if (mode === '0') return localServer();
  const context = opts.containerContext ?? join(projectRoot, 'test', 'container');
  if (mode === '1') return containerServer(context);
  try {
    return await containerServer(context);
  } catch (e) {
    const reason = (((e as Error).message || String(e)).split('\n')[0] ?? '').slice(0, 300);
    console.log(`container path unavailable, using a local cluster: ${reason}`);
    return localServer();
  }
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

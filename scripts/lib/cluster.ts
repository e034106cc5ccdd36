/*
 * The local PostgreSQL 15 cluster manager, shared by `npm start`, `npm stop`, the test suite
 * and the benchmark. It creates (or reuses) a cluster with pg_cron preloaded, on a port of its
 * own, and runs the server as `postgres` when invoked as root (initdb refuses root).
 * Every failure is a ClusterError: one line saying what went wrong and how to fix it, with a
 * code the callers check instead of the wording.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  appendFileSync,
  chownSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';

export const PG_BIN = process.env.SPECTRUM_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const PG_LIB = process.env.SPECTRUM_PG_LIB ?? '/usr/lib/postgresql/15/lib';

export type ClusterErrorCode =
  | 'packages_missing'
  | 'port_taken'
  | 'data_dir_foreign'
  | 'data_dir_unreachable'
  | 'start_failed'
  | 'init_failed';

export class ClusterError extends Error {
  constructor(
    readonly code: ClusterErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ClusterError';
  }
}

export interface ClusterOptions {
  dataDir: string;
  port: number;
  /** The database pg_cron runs its jobs from (`cron.database_name`). */
  cronDatabase: string;
  /** Extra lines for postgresql.conf, e.g. benchmark tuning. */
  extraConf?: string[];
}

export interface Cluster {
  dataDir: string;
  port: number;
  url(database: string): string;
}

const isRoot = () => process.getuid?.() === 0;

/** Runs a PostgreSQL binary, as `postgres` when we are root. */
function runPg(bin: string, args: string[]) {
  const exe = join(PG_BIN, bin);
  const [cmd, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
  return spawnSync(cmd, argv, { encoding: 'utf8', stdio: 'pipe' });
}

function missingPackages(extra: string[] = []): string[] {
  const missing: string[] = [];
  if (!existsSync(join(PG_BIN, 'initdb'))) missing.push('postgresql-15');
  if (!existsSync(join(PG_LIB, 'pg_cron.so'))) missing.push('postgresql-15-cron');
  if (
    extra.includes('postgresql-15-plpgsql-check') &&
    !existsSync(join(PG_LIB, 'plpgsql_check.so'))
  )
    missing.push('postgresql-15-plpgsql-check');
  return missing;
}

function canSudo(): boolean {
  return spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
}

/**
 * Installs the Debian packages the cluster needs when they are missing and we are root (or
 * have passwordless sudo); otherwise fails with the exact command to run.
 */
export function ensurePackages(extra: string[] = []): void {
  const missing = missingPackages(extra);
  if (missing.length === 0) return;
  const command = `apt-get update && apt-get install -y ${missing.join(' ')}`;
  const prefix = isRoot() ? [] : canSudo() ? ['sudo', '-n'] : null;
  if (prefix === null) {
    throw new ClusterError(
      'packages_missing',
      `PostgreSQL packages missing (${missing.join(', ')}): run \`sudo ${command}\` and try again`,
    );
  }
  console.log(`installing ${missing.join(', ')} with apt-get…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', ...missing],
  ]) {
    const [cmd, ...rest] = [...prefix, 'apt-get', ...args];
    const r = spawnSync(cmd!, rest, { stdio: 'inherit', env });
    if (r.status !== 0)
      throw new ClusterError(
        'packages_missing',
        `apt-get ${args[0]} failed: run \`${command}\` by hand and read its output`,
      );
  }
  const still = missingPackages(extra);
  if (still.length > 0)
    throw new ClusterError(
      'packages_missing',
      `still missing after apt-get: ${still.join(', ')}: run \`${command}\``,
    );
}

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr ? ok(addr.port) : fail(new Error('no port')),
      );
    });
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((ok) => {
    const srv = createServer();
    srv.once('error', () => ok(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => ok(true)));
  });
}

/** The first ancestor of `dir` (which itself is handed to postgres) that postgres cannot enter. */
function blockedAncestor(dir: string): string | null {
  if (!isRoot()) return null;
  let d = resolve(dir);
  const chain: string[] = [];
  while (true) {
    chain.unshift(d);
    const up = dirname(d);
    if (up === d) break;
    d = up;
  }
  for (const p of chain.slice(0, -1)) {
    if (!existsSync(p)) break;
    const r = spawnSync('runuser', ['-u', 'postgres', '--', 'test', '-x', p], { stdio: 'ignore' });
    if (r.status !== 0) return p;
  }
  return null;
}

function isInitialised(dataDir: string) {
  return existsSync(join(dataDir, 'PG_VERSION'));
}

export function isRunning(dataDir: string): boolean {
  if (!isInitialised(dataDir)) return false;
  return runPg('pg_ctl', ['-D', dataDir, 'status']).status === 0;
}

function init(opts: ClusterOptions) {
  const { dataDir } = opts;
  mkdirSync(dataDir, { recursive: true });
  if (isRoot()) {
    const blocked = blockedAncestor(dataDir);
    if (blocked) {
      throw new ClusterError(
        'data_dir_unreachable',
        `the server runs as postgres, which cannot enter ${blocked}: run \`chmod o+x ` +
          `${blocked}\` or set SPECTRUM_PGDATA to a directory under /var/tmp`,
      );
    }
    const pw = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim();
    const gr = execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim();
    chownSync(dataDir, Number(pw), Number(gr));
  }
  const r = runPg('initdb', [
    '-D',
    dataDir,
    '-U',
    'postgres',
    '--auth=trust',
    '-E',
    'UTF8',
    '--locale=C.UTF-8',
    '--no-sync',
  ]);
  if (r.status !== 0) {
    throw new ClusterError(
      'init_failed',
      `initdb failed: ${(r.stderr || r.stdout).trim().split('\n').pop()}`,
    );
  }
  const conf = [
    '',
    '# spectrum-pipeline',
    `listen_addresses = '127.0.0.1'`,
    `unix_socket_directories = ''`,
    `shared_preload_libraries = 'pg_cron'`,
    `cron.database_name = '${opts.cronDatabase}'`,
    `cron.use_background_workers = on`,
    `cron.timezone = 'UTC'`,
    `max_worker_processes = 32`,
    `max_connections = 200`,
    `timezone = 'UTC'`,
    `log_min_messages = warning`,
    ...(opts.extraConf ?? []),
    '',
  ].join('\n');
  appendFileSync(join(dataDir, 'postgresql.conf'), conf);
}

/** The port a running server listens on, from its postmaster.pid (line 4). */
function runningPort(dataDir: string): number | null {
  const f = join(dataDir, 'postmaster.pid');
  if (!existsSync(f)) return null;
  const port = Number(readFileSync(f, 'utf8').split('\n')[3]);
  return Number.isInteger(port) && port > 0 ? port : null;
}

/** Starts the cluster in `dataDir`, creating it first when needed; reuses a running one. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  ensurePackages();
  const dataDir = resolve(opts.dataDir);
  if (existsSync(dataDir) && isRoot()) {
    const owner = statSync(dataDir).uid;
    const pg = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    if (owner !== pg && isInitialised(dataDir))
      throw new ClusterError(
        'data_dir_foreign',
        `${dataDir} belongs to uid ${owner}, not postgres: remove it (\`rm -rf ${dataDir}\`) or ` +
          `set SPECTRUM_PGDATA`,
      );
  } else if (
    existsSync(dataDir) &&
    isInitialised(dataDir) &&
    statSync(dataDir).uid !== process.getuid?.()
  ) {
    throw new ClusterError(
      'data_dir_foreign',
      `${dataDir} belongs to another user: remove it or set SPECTRUM_PGDATA`,
    );
  }
  if (!isInitialised(dataDir)) init({ ...opts, dataDir });
  const port = isRunning(dataDir) ? (runningPort(dataDir) ?? opts.port) : opts.port;
  const cluster: Cluster = {
    dataDir,
    port,
    url: (db) => `postgres://postgres@127.0.0.1:${port}/${db}`,
  };
  if (isRunning(dataDir)) return cluster;
  if (!(await portIsFree(port))) {
    throw new ClusterError(
      'port_taken',
      `port ${port} on 127.0.0.1 is taken by another program: set SPECTRUM_PORT to a free port`,
    );
  }
  const log = join(dataDir, 'server.log');
  const r = runPg('pg_ctl', [
    '-D',
    dataDir,
    '-l',
    log,
    '-o',
    `-p ${port}`,
    '-w',
    '-t',
    '60',
    'start',
  ]);
  if (r.status !== 0) {
    const tail = existsSync(log)
      ? readFileSync(log, 'utf8')
          .trim()
          .split('\n')
          .filter((l) => /FATAL|ERROR|could not/.test(l))
          .pop()
      : '';
    if (tail && /could not bind|Address already in use/.test(tail))
      throw new ClusterError(
        'port_taken',
        `port ${port} is taken: set SPECTRUM_PORT to a free port (${tail})`,
      );
    throw new ClusterError(
      'start_failed',
      `the server did not start: ${tail || r.stderr.trim()} (see ${log})`,
    );
  }
  return cluster;
}

/** Stops the cluster in `dataDir` (fast shutdown). Quiet when it is not running. */
export function stopCluster(dataDir: string, mode: 'fast' | 'immediate' = 'fast'): boolean {
  if (!isRunning(dataDir)) return false;
  const r = runPg('pg_ctl', ['-D', dataDir, '-m', mode, '-w', 'stop']);
  if (r.status !== 0)
    throw new ClusterError('start_failed', `pg_ctl stop failed: ${r.stderr.trim()}`);
  return true;
}

export interface ThrowawayCluster extends Cluster {
  /** Stops the server (immediate) and removes its data directory; safe to call twice. */
  remove(): void;
}

/**
 * A cluster in a new temporary directory on a free port, for the tests and the benchmark:
 * nothing of it is kept. `parent` defaults to the system temporary directory.
 */
export async function throwawayCluster(opts: {
  prefix: string;
  parent?: string;
  cronDatabase?: string;
  extraConf?: string[];
}): Promise<ThrowawayCluster> {
  const dataDir = mkdtempSync(join(opts.parent ?? tmpdir(), opts.prefix));
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    try {
      stopCluster(dataDir, 'immediate');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  };
  try {
    const cluster = await startCluster({
      dataDir,
      port: await freePort(),
      cronDatabase: opts.cronDatabase ?? 'postgres',
      extraConf: opts.extraConf,
    });
    return { ...cluster, remove };
  } catch (e) {
    remove();
    throw e;
  }
}

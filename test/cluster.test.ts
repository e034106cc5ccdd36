/* The cluster manager's failures and the commands' bad arguments: one line, with the fix. */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ClusterError, freePort, startCluster } from '../scripts/lib/cluster.ts';
import { projectRoot } from '../scripts/lib/paths.ts';

const scratch = mkdtempSync(join(tmpdir(), 'spectrum-cluster-test-'));
chmodSync(scratch, 0o755);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a ClusterError');
    },
    (e: unknown) => e as ClusterError,
  );

describe('startCluster', () => {
  it('says when the port is taken, and how to choose another', async () => {
    const port = await freePort();
    const squatter: Server = createServer();
    await new Promise<void>((ok) => squatter.listen(port, '127.0.0.1', ok));
    try {
      const e = await failure(
        startCluster({ dataDir: join(scratch, 'taken'), port, cronDatabase: 'postgres' }),
      );
      expect(e).toBeInstanceOf(ClusterError);
      expect(e.code).toBe('port_taken');
      expect(e.message).toContain('SPECTRUM_PORT');
      expect(e.message.split('\n')).toHaveLength(1);
    } finally {
      squatter.close();
    }
  });

  it.runIf(process.getuid?.() === 0)(
    'refuses a data directory that belongs to someone else',
    async () => {
      const dir = join(scratch, 'foreign');
      mkdirSync(dir);
      writeFileSync(join(dir, 'PG_VERSION'), '15\n');
      const e = await failure(
        startCluster({ dataDir: dir, port: await freePort(), cronDatabase: 'postgres' }),
      );
      expect(e.code).toBe('data_dir_foreign');
      expect(e.message).toContain('SPECTRUM_PGDATA');
    },
  );

  it.runIf(process.getuid?.() === 0)(
    'says which directory the postgres user cannot enter',
    async () => {
      const closed = mkdtempSync(join(scratch, 'closed-'));
      chmodSync(closed, 0o700);
      const e = await failure(
        startCluster({
          dataDir: join(closed, 'data'),
          port: await freePort(),
          cronDatabase: 'postgres',
        }),
      );
      expect(e.code).toBe('data_dir_unreachable');
      expect(e.message).toContain(`chmod o+x ${closed}`);
    },
  );
});

describe('bad command-line arguments', () => {
  const run = (script: string, args: string[], env: Record<string, string> = {}) => {
    const r = spawnSync(
      join(projectRoot, 'node_modules', '.bin', 'tsx'),
      [join(projectRoot, 'scripts', script), ...args],
      {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      },
    );
    return { status: r.status, stderr: r.stderr.trim() };
  };

  it('npm start names the argument and what to set instead', () => {
    const r = run('start.ts', ['--port', '1']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/takes no arguments.*SPECTRUM_PORT/);
  });

  it('npm start refuses a port it cannot use', () => {
    const r = run('start.ts', [], { SPECTRUM_PORT: 'eighty' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/SPECTRUM_PORT=eighty is not a usable port/);
  });

  it('npm run migrate without DATABASE_URL shows how to give it', () => {
    const r = run('migrate.ts', [], { DATABASE_URL: '' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/DATABASE_URL is not set: run it as DATABASE_URL=/);
  });
});

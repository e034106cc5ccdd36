/*
 * The container path of the suite's test server (test/setup/server.ts) never fails the suite:
 * a container runtime that answers but cannot build the image (as an engine without registry
 * access answers: the base image cannot be pulled) costs one line, then the local cluster is
 * used. SPECTRUM_TEST_CONTAINER=1 makes the same failure an error.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../scripts/lib/paths.ts';

const PULL_ERROR =
  'Get "https://registry.invalid/v2/": dial tcp: lookup registry.invalid: no such host';

/** A Docker engine API that answers and reports itself, and fails every build. */
function brokenEngine(socket: string) {
  const calls: string[] = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://engine').pathname.replace(/^\/v[0-9.]+/, '');
    calls.push(`${req.method} ${path}`);
    req.resume();
    req.on('end', () => {
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (path === '/_ping') return res.end('OK');
      if (path === '/info')
        return json(200, { ServerVersion: '20.10', OperatingSystem: 'Debian', OSType: 'linux' });
      if (/^\/images\/.+\/json$/.test(path)) return json(404, { message: 'No such image' });
      if (path === '/build') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(JSON.stringify({ stream: 'Step 1/6 : FROM debian:bookworm-slim\n' }) + '\n');
        return res.end(
          JSON.stringify({ errorDetail: { message: PULL_ERROR }, error: PULL_ERROR }) + '\n',
        );
      }
      json(500, { message: 'server error' });
    });
  });
  return { calls, server };
}

let dir: string;
let engine: { calls: string[]; server: Server };
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spectrum-engine-'));
  engine = brokenEngine(join(dir, 'docker.sock'));
  await new Promise<void>((ok) => engine.server.listen(join(dir, 'docker.sock'), ok));
});
afterAll(async () => {
  await new Promise((ok) => engine?.server.close(ok));
  rmSync(dir, { recursive: true, force: true });
});

/** Runs test/container/probe.ts against the broken engine (asynchronously: it serves it). */
function probe(env: Record<string, string>) {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: `unix://${dir}/docker.sock` };
  for (const k of ['SPECTRUM_TEST_DATABASE_URL', 'SPECTRUM_TEST_CONTAINER', 'DEBUG'])
    delete childEnv[k];
  Object.assign(childEnv, env);
  return new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
    execFile(
      join(projectRoot, 'node_modules', '.bin', 'tsx'),
      ['test/container/probe.ts'],
      { cwd: projectRoot, env: childEnv, timeout: 90_000 },
      (err, stdout, stderr) => done({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('the container path of the test server', () => {
  it('falls back to the local cluster in one line when the engine cannot build', async () => {
    engine.calls.length = 0;
    const r = await probe({});
    expect(r.code, r.stderr).toBe(0);
    expect(engine.calls).toContain('POST /build');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toEqual([
      'container path unavailable, using a local cluster: image build failed: ' +
        `${PULL_ERROR} (debian:bookworm-slim is not in the engine: ` +
        'test/container/base-image.sh builds it)',
      'test server kind: local',
    ]);
    expect(r.stderr).toBe('');
  });

  it('fails with the same error when SPECTRUM_TEST_CONTAINER=1 forces the container', async () => {
    const r = await probe({ SPECTRUM_TEST_CONTAINER: '1' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(PULL_ERROR);
    expect(r.stdout).not.toContain('test server kind');
  });
});

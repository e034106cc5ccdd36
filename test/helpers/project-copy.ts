/*
 * A throwaway copy of the project, for tests that run `npm run build` and `graphile-migrate
 * commit` the way a DBA does, without touching the repository: scripts/, sql/, migrations/
 * and the config files are copied, node_modules is linked.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  cpSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, withDatabase } from '../../scripts/lib/db.ts';
import { projectRoot } from '../../scripts/lib/paths.ts';

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface ProjectCopy {
  root: string;
  /** `npm run build -- <args>` in the copy. */
  build(...args: string[]): Run;
  /** `graphile-migrate commit -m <message>` in the copy, with its own shadow and dev databases. */
  commit(message: string): Promise<Run>;
  read(path: string): string;
  write(path: string, text: string): void;
  /** Every file of sql/ and migrations/ with its text, to show that a command wrote nothing. */
  snapshot(): Map<string, string>;
  /** A new empty database on the test server; dropped by remove(). */
  createDatabase(label: string): Promise<string>;
  remove(): Promise<void>;
}

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Run => {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

export function copyProject(adminUrl: string): ProjectCopy {
  const root = mkdtempSync(join(tmpdir(), 'spectrum-copy-'));
  for (const p of ['scripts', 'sql', 'migrations', 'package.json', 'tsconfig.json', '.gmrc'])
    cpSync(join(projectRoot, p), join(root, p), { recursive: true });
  symlinkSync(join(projectRoot, 'node_modules'), join(root, 'node_modules'));
  const databases: string[] = [];
  const createDatabase = async (label: string) => {
    const name = `${label}_${randomBytes(4).toString('hex')}`;
    const admin = connect(adminUrl, { max: 1 });
    try {
      await admin.unsafe(`create database ${name}`);
    } finally {
      await admin.end();
    }
    databases.push(name);
    return withDatabase(adminUrl, name);
  };
  const bin = (name: string) => join(root, 'node_modules', '.bin', name);
  return {
    root,
    build: (...args) => run(bin('tsx'), ['scripts/build/main.ts', ...args], root),
    async commit(message) {
      // commit rebuilds the shadow database and then also migrates DATABASE_URL: a dev database.
      const dev = await createDatabase('copy_dev');
      const shadow = `copy_shadow_${randomBytes(4).toString('hex')}`;
      databases.push(shadow);
      return run(bin('graphile-migrate'), ['commit', '-m', message], root, {
        DATABASE_URL: dev,
        SHADOW_DATABASE_URL: withDatabase(adminUrl, shadow),
        ROOT_DATABASE_URL: adminUrl,
      });
    },
    read: (path) => readFileSync(join(root, path), 'utf8'),
    write: (path, text) => writeFileSync(join(root, path), text),
    snapshot() {
      const files = new Map<string, string>();
      for (const dir of ['sql', 'migrations', 'migrations/committed'])
        for (const f of readdirSync(join(root, dir), { withFileTypes: true }))
          if (f.isFile())
            files.set(`${dir}/${f.name}`, readFileSync(join(root, dir, f.name), 'utf8'));
      return files;
    },
    createDatabase,
    async remove() {
      const admin = connect(adminUrl, { max: 1 });
      try {
        for (const d of databases) await admin.unsafe(`drop database if exists ${d} with (force)`);
      } finally {
        await admin.end();
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

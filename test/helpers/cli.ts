/* What the tests of a command line share: a scratch directory and the message of a refusal. */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';

/** A directory removed after the file's tests; open to postgres, which runs the clusters as root. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The message `parse` refuses `argv` with, as an error of class `refusal`; fails if it accepts. */
export function refusal<E extends Error>(
  parse: (argv: string[]) => unknown,
  kind: new (...args: never[]) => E,
): (argv: string[]) => string {
  return (argv) => {
    try {
      parse(argv);
    } catch (e) {
      expect(e).toBeInstanceOf(kind);
      return (e as Error).message;
    }
    throw new Error(`parseArgs(${JSON.stringify(argv)}) accepted it`);
  };
}

/*
 * npm run soak: its command line, and one short real run (about three minutes of producers,
 * every fault included) in a throwaway cluster of its own, which the soak crashes and restarts:
 * it must exit 0 and its summary must show every check at zero and every fault injected and
 * recovered from.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArgs, SoakUsageError } from '../scripts/soak/args.ts';
import { projectRoot } from '../scripts/lib/paths.ts';
import { refusal, scratchDir } from './helpers/cli.ts';

// The soak's cluster lives under it, and runs as postgres when the tests run as root.
const scratch = scratchDir('spectrum-soak-test-');
const usage = refusal(parseArgs, SoakUsageError);

describe('the command line', () => {
  it('takes the defaults and the tick in minutes or seconds', () => {
    expect(parseArgs([])).toMatchObject({
      minutes: 30,
      rate: 2000,
      tickSeconds: 60,
      producers: 4,
      out: null,
    });
    expect(parseArgs(['--tick', '20s', '--minutes=2.5']).tickSeconds).toBe(20);
    expect(parseArgs(['--tick', '5m', '--minutes', '30']).tickSeconds).toBe(300);
  });

  it('says what was wrong and the command that works', () => {
    expect(usage(['--rate'])).toBe('--rate needs a value: e.g. npm run soak -- --rate 2000');
    expect(usage(['--rate', 'fast'])).toBe(
      '--rate fast is not a whole number from 10 to 50000: e.g. npm run soak -- --rate 2000',
    );
    expect(usage(['--tick', '7m'])).toMatch(/^--tick 7m is not a tick pg_cron can keep/);
    expect(usage(['--tick', '5s'])).toMatch(/^--tick 5s is not a tick pg_cron can keep/);
    expect(usage(['--minutes', '1', '--tick', '1m'])).toMatch(
      /^--minutes 1 sees fewer than 6 ticks of 1m/,
    );
    expect(usage(['--fast'])).toMatch(/^unknown argument "--fast": the options are --minutes/);
    expect(usage(['--seed', '1', '--seed', '2'])).toBe('--seed is given twice: give it once');
    expect(usage(['--out'])).toBe(
      '--out needs a file name: e.g. npm run soak -- --out bench-results/soak.md',
    );
  });

  it('exits 2 on a bad argument, printing it and the usage, before starting anything', () => {
    const r = spawnSync('npx', ['tsx', 'scripts/soak/main.ts', '--rate', '-5'], {
      cwd: projectRoot,
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('npm run soak: --rate -5 is not a whole number from 10 to 50000');
    expect(r.stderr).toContain('usage: npm run soak --');
    expect(r.stdout).not.toContain('soak cluster');
  });
});

describe('a signal', () => {
  it('stops the soak with a non-zero status, its cluster stopped and removed', async () => {
    const dir = mkdtempSync(join(scratch, 'signal-'));
    chmodSync(dir, 0o755);
    const summaryFile = join(dir, 'summary.json');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'scripts/soak/main.ts',
        '--minutes',
        '2',
        '--tick',
        '10s',
        '--rate',
        '100',
      ],
      {
        cwd: projectRoot,
        env: { ...process.env, SPECTRUM_SOAK_DIR: dir, SOAK_SUMMARY_FILE: summaryFile },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stderr.on('data', (d) => (output += d));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d) => {
        output += d;
        if (output.includes('one line per tick')) resolve();
      }),
    );
    const dataDir = /data in (\S+) \(removed/.exec(output)![1]!;
    expect(existsSync(dataDir)).toBe(true);
    child.kill('SIGTERM');
    expect(await closed, output).toBe(143);
    expect(JSON.parse(readFileSync(summaryFile, 'utf8'))).toMatchObject({
      passed: false,
      stoppedBy: 'SIGTERM',
    });
    expect(existsSync(dataDir)).toBe(false);
    // Its own mount (when it could mount one) is gone too.
    const mount = /tablespace on .* at (\S+)$/m.exec(output)?.[1];
    if (mount) expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(` ${mount} `);
  });
});

interface Summary {
  passed: boolean;
  checks: { check: string; found: number }[];
  latency: { events: number; p50: number; p99: number; max: number };
  faults: { fault: string; injected: boolean; recovered: number | null; figures: string }[];
  committedRows: number;
  producedSeconds: number;
}

describe('a short soak', () => {
  it(
    'survives every fault with nothing lost or duplicated, and exits 0',
    async () => {
      const summaryFile = join(scratch, 'summary.json');
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          'scripts/soak/main.ts',
          '--minutes',
          '2.5',
          '--tick',
          '10s',
          '--rate',
          '1000',
          '--seed',
          '5',
        ],
        {
          cwd: projectRoot,
          env: { ...process.env, SPECTRUM_SOAK_DIR: scratch, SOAK_SUMMARY_FILE: summaryFile },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
      const summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as Summary;

      expect(summary.checks.length).toBeGreaterThan(10);
      for (const c of summary.checks)
        expect({ check: c.check, found: c.found }).toEqual({
          check: c.check,
          found: 0,
        });
      expect(summary.faults.map((f) => f.fault).sort()).toEqual([
        'maintenance overlapping a tick and a reprocess',
        "producer's connection cut mid-COPY",
        "raw_events' disk full",
        'server crash mid-tick (pg_ctl stop -m immediate)',
        "tick's backend cancelled (pg_cancel_backend)",
        "tick's backend terminated (pg_terminate_backend)",
      ]);
      for (const f of summary.faults) {
        expect({ fault: f.fault, injected: f.injected }).toEqual({
          fault: f.fault,
          injected: true,
        });
        expect(f.recovered, `${f.fault}: no tick finished after it`).not.toBeNull();
      }
      // The tick faults struck a backend seen inside the CALL.
      for (const f of summary.faults.filter((x) => /tick's backend|crash/.test(x.fault)))
        expect(f.figures).toMatch(/pg_stat_activity: pid \d+ active in `CALL /);
      // Producers kept their rate through the faults (within a third).
      expect(summary.committedRows / summary.producedSeconds).toBeGreaterThan(1000 * 0.66);
      expect(summary.latency.events).toBeGreaterThan(100_000);
      expect(summary.passed).toBe(true);
      expect(output).toContain('PASSED: nothing lost, nothing duplicated');
      expect(status, output.slice(-3000)).toBe(0);
    },
    10 * 60_000,
  );
});

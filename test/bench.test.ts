/*
 * npm run bench: its command line, and one small real run in its own throwaway cluster, which
 * must finish, find that every contender did the same work, and write the results file.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BenchUsageError, parseArgs } from '../scripts/bench/args.ts';
import { projectRoot } from '../scripts/lib/paths.ts';
import { refusal, scratchDir } from './helpers/cli.ts';

// The benchmark's cluster lives under it, and runs as postgres when the tests run as root.
const scratch = scratchDir('spectrum-bench-test-');
const usage = refusal(parseArgs, BenchUsageError);

describe('the command line', () => {
  it('takes the defaults, and one round above 300,000 events', () => {
    expect(parseArgs([])).toMatchObject({
      events: 100_000,
      statusRows: 0,
      rounds: 3,
      batchSize: 20_000,
      pgbenchSeconds: 10,
      out: 'bench-results/latest.md',
    });
    expect(parseArgs(['--events', '1_000_000']).rounds).toBe(1);
    expect(parseArgs(['--events=5000', '--rounds', '2']).rounds).toBe(2);
    expect(parseArgs([]).citus).toBe(false);
    expect(parseArgs(['--citus', '--events', '20000'])).toMatchObject({
      citus: true,
      events: 20_000,
      out: 'bench-results/citus.md',
    });
  });

  it('says what was wrong and the command that works', () => {
    expect(usage(['--events'])).toBe(
      '--events needs a value: e.g. npm run bench -- --events 100000',
    );
    expect(usage(['--events', '12x'])).toBe(
      '--events 12x is not a whole number from 1000 to 1000000: ' +
        'e.g. npm run bench -- --events 100000',
    );
    expect(usage(['--fast'])).toMatch(/^unknown argument "--fast": the options are --events/);
    expect(usage(['--rounds', '2', '--rounds', '3'])).toBe('--rounds is given twice: give it once');
    expect(usage(['--citus=yes'])).toBe('--citus takes no value: e.g. npm run bench -- --citus');
    expect(usage(['--citus', '--citus'])).toBe('--citus is given twice: give it once');
    expect(usage(['--out'])).toBe(
      '--out needs a file name: e.g. npm run bench -- --out bench-results/latest.md',
    );
  });

  it('npm run bench:reprocess prints its usage for --help and refuses what it does not know', () => {
    const run = (...argv: string[]) =>
      spawnSync('npx', ['tsx', 'scripts/bench/reprocess.ts', ...argv], {
        cwd: projectRoot,
        encoding: 'utf8',
      });
    const help = run('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run bench:reprocess -- \[--events N\]/);
    const bad = run('--events', '10', '--fast');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown argument "--fast": the options are --events and --chunk/);
    expect(run('--chunk-size', 'x').stderr).toMatch(/--chunk-size takes a positive whole number/);
  });

  it('exits with status 2 and one line on a bad argument', () => {
    const r = spawnSync('npx', ['tsx', 'scripts/bench/main.ts', '--events', '5'], {
      cwd: projectRoot,
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')[0]).toBe(
      'npm run bench: --events 5 is not a whole number from 1000 to 1000000: ' +
        'e.g. npm run bench -- --events 100000',
    );
  });
});

describe('a small run', () => {
  it(
    'measures every contender, checks they did the same work, and writes the table',
    { timeout: 600_000 },
    () => {
      const out = join(scratch, 'small.md');
      const r = spawnSync(
        'npx',
        [
          'tsx',
          'scripts/bench/main.ts',
          '--events',
          '1000',
          '--rounds',
          '1',
          '--pgbench-seconds',
          '1',
          '--out',
          out,
        ],
        {
          cwd: projectRoot,
          encoding: 'utf8',
          env: { ...process.env, SPECTRUM_BENCH_DIR: scratch },
        },
      );
      expect(r.status, r.stderr).toBe(0);
      const md = readFileSync(out, 'utf8');
      for (const row of [
        'COPY into the bare table with only a primary key',
        'COPY into spectrum.raw_events',
        'process_pending vs strongest reference',
        'process_pending vs plain-SQL reference',
        'process_pending vs naive loop',
        'process_pending, 2 workers vs 1',
        'process_pending, 1% malformed vs all valid',
      ])
        expect(md).toContain(`| ${row} |`);
      for (const table of ['bench.raw_bare', 'spectrum.raw_events']) {
        const row = md.match(
          new RegExp(
            `\\| single-row INSERT into ${table.replace('.', '\\.')}, 8 clients \\(pgbench\\) ` +
              `\\| ([\\d,]+) \\| 1\\.00 \\| ([\\d,]+) \\|`,
          ),
        );
        expect(row, `no pgbench row for ${table}`).not.toBeNull();
        expect(Number(row![1]!.replace(/,/g, ''))).toBeGreaterThan(0);
      }
      expect(md).toMatch(
        /process_pending outcome: (\d+) done, (\d+) failed, .*; the references did the same work\./,
      );
      const [, done, failed] = md.match(/process_pending outcome: (\d+) done, (\d+) failed/)!;
      expect(Number(done) + Number(failed)).toBe(1000);
      expect(Number(failed)).toBeGreaterThan(0);
    },
  );
});

/*
 * The benchmark's command line. A bad argument is a BenchUsageError: what was wrong and the
 * command that would work; main prints it and exits with status 2.
 */

export interface BenchArgs {
  /** Raw events per contender. */
  events: number;
  /** Raw rows for the pipeline_status latency test; 0 skips it. */
  statusRows: number;
  /** Repetitions of each timed contender; the table shows the median. */
  rounds: number;
  /** Rows per batch for process_pending and the references. */
  batchSize: number;
  /** Seconds of pgbench single-row INSERTs; 0 skips them. */
  pgbenchSeconds: number;
  /** Where the markdown table goes (relative to the project root). */
  out: string;
  /** Plain PostgreSQL against Citus with 1 and 2 workers instead (scripts/bench/citus.ts). */
  citus: boolean;
}

export class BenchUsageError extends Error {
  override name = 'BenchUsageError';
}

export const USAGE = `usage: npm run bench -- [--events N] [--status-rows N] [--rounds N]
                        [--batch-size N] [--pgbench-seconds N] [--out FILE] [--citus]
  --events N           raw events per contender (default 100000, at most 1000000)
  --status-rows N      raw rows for the pipeline_status latency test
                       (default 0 = skip; 10000000 takes minutes)
  --rounds N           repetitions of each timed contender, median shown
                       (default 3; 1 when --events > 300000); COPY runs 3 times as many
  --batch-size N       rows per batch for process_pending and the references (default 20000)
  --pgbench-seconds N  seconds of 8-client single-row INSERTs (default 10; 0 skips)
  --out FILE           the markdown results file (default bench-results/latest.md,
                       bench-results/citus.md with --citus)
  --citus              scaling out instead: plain PostgreSQL against Citus with 1 and 2
                       workers, each pinned to its own CPU (needs Citus installed)`;

/** Each option's [minimum, maximum, example]. */
const LIMITS: Record<string, [number, number, number]> = {
  '--events': [1000, 1_000_000, 100_000],
  '--status-rows': [0, 50_000_000, 10_000_000],
  '--rounds': [1, 20, 3],
  '--batch-size': [100, 1_000_000, 20_000],
  '--pgbench-seconds': [0, 600, 10],
};

function integer(flag: string, raw: string | undefined): number {
  const [min, max, example] = LIMITS[flag]!;
  const text = (raw ?? '').replace(/_/g, '');
  const n = Number(text);
  if (raw === undefined || raw.startsWith('--'))
    throw new BenchUsageError(`${flag} needs a value: e.g. npm run bench -- ${flag} ${example}`);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new BenchUsageError(
      `${flag} ${raw} is not a whole number from ${min} to ${max}: e.g. npm run bench -- ${flag} ` +
        `${example}`,
    );
  return n;
}

export function parseArgs(argv: string[]): BenchArgs {
  const seen = new Map<string, string | undefined>();
  for (let i = 0; i < argv.length; i++) {
    let flag = argv[i]!;
    let value: string | undefined;
    const eq = flag.indexOf('=');
    if (flag.startsWith('--') && eq > 0) [flag, value] = [flag.slice(0, eq), flag.slice(eq + 1)];
    else if (flag in LIMITS || flag === '--out') value = argv[++i];
    if (flag === '--help' || flag === '-h') throw new BenchUsageError('help');
    if (flag === '--citus') {
      if (value !== undefined)
        throw new BenchUsageError('--citus takes no value: e.g. npm run bench -- --citus');
      if (seen.has(flag)) throw new BenchUsageError(`${flag} is given twice: give it once`);
      seen.set(flag, undefined);
      continue;
    }
    if (!(flag in LIMITS) && flag !== '--out')
      throw new BenchUsageError(
        `unknown argument ${JSON.stringify(argv[i])}: the options are --events, --status-rows, ` +
          `--rounds, --batch-size, --pgbench-seconds, --out, --citus`,
      );
    if (seen.has(flag)) throw new BenchUsageError(`${flag} is given twice: give it once`);
    seen.set(flag, value);
  }
  const get = (flag: string, dflt: number) =>
    seen.has(flag) ? integer(flag, seen.get(flag)) : dflt;
  const events = get('--events', 100_000);
  const out = seen.get('--out');
  if (seen.has('--out') && (!out || out.startsWith('--')))
    throw new BenchUsageError(
      '--out needs a file name: e.g. npm run bench -- --out bench-results/latest.md',
    );
  return {
    events,
    statusRows: get('--status-rows', 0),
    rounds: get('--rounds', events > 300_000 ? 1 : 3),
    batchSize: get('--batch-size', 20_000),
    pgbenchSeconds: get('--pgbench-seconds', 10),
    out: out ?? (seen.has('--citus') ? 'bench-results/citus.md' : 'bench-results/latest.md'),
    citus: seen.has('--citus'),
  };
}

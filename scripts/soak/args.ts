/*
 * The soak's command line. A bad argument is a SoakUsageError: what was wrong and the command
 * that would work; main prints it and exits with status 2.
 */

export interface SoakArgs {
  /** How long producers insert, in minutes (the final tick and the checks come after). */
  minutes: number;
  /** Events per second, all producers together. */
  rate: number;
  /** The tick, in seconds: 60 is pg_cron's `* * * * *`. */
  tickSeconds: number;
  /** The tick as given (`1m`, `20s`). */
  tick: string;
  /** Concurrent producer connections. */
  producers: number;
  /** Seeds the events and the moments of the faults, so that a run can be repeated. */
  seed: number;
  /** Where the markdown report goes (relative to the project root); null: printed only. */
  out: string | null;
}

export class SoakUsageError extends Error {
  override name = 'SoakUsageError';
}

export const USAGE = `usage: npm run soak -- [--minutes M] [--rate R] [--tick T] [--producers N]
                       [--seed N] [--out FILE]
  --minutes M     how long the producers insert (default 30; decimals allowed, at least 1)
  --rate R        events per second, all producers together (default 2000)
  --tick T        the pg_cron tick: 1m (= '* * * * *'), 2m, 5m … or 10s, 15s, 20s, 30s
                  (default 1m; seconds must divide a minute)
  --producers N   concurrent producer connections (default 4)
  --seed N        seeds the events and the moments of the faults (default 1)
  --out FILE      also write the report as markdown (e.g. bench-results/soak.md)`;

/** Each numeric option's [minimum, maximum, example]. */
const LIMITS: Record<string, [number, number, number]> = {
  '--minutes': [1, 24 * 60, 30],
  '--rate': [10, 50_000, 2000],
  '--producers': [1, 32, 4],
  '--seed': [0, 2 ** 31 - 1, 1],
};
const TEXT = ['--tick', '--out'];

function number(flag: string, raw: string | undefined): number {
  const [min, max, example] = LIMITS[flag]!;
  if (raw === undefined || raw.startsWith('--'))
    throw new SoakUsageError(`${flag} needs a value: e.g. npm run soak -- ${flag} ${example}`);
  const text = raw.replace(/_/g, '');
  const n = Number(text);
  const decimals = flag === '--minutes';
  if (!(decimals ? /^\d+(\.\d+)?$/ : /^\d+$/).test(text) || n < min || n > max)
    throw new SoakUsageError(
      `${flag} ${raw} is not a ${decimals ? 'number' : 'whole number'} from ${min} to ${max}: ` +
        `e.g. npm run soak -- ${flag} ${example}`,
    );
  return n;
}

/** `1m`, `5m`, `20s` → seconds; a cron minute step must divide an hour, seconds a minute. */
export function parseTick(raw: string | undefined): number {
  const fix = 'e.g. npm run soak -- --tick 1m (or --tick 20s for a short run)';
  if (raw === undefined || raw.startsWith('--'))
    throw new SoakUsageError(`--tick needs a value: ${fix}`);
  const m = /^(\d+)(s|m)$/.exec(raw);
  const n = m ? Number(m[1]) : NaN;
  if (m && m[2] === 'm' && n >= 1 && 60 % n === 0) return n * 60;
  if (m && m[2] === 's' && n >= 10 && n < 60 && 60 % n === 0) return n;
  throw new SoakUsageError(
    `--tick ${raw} is not a tick pg_cron can keep: minutes that divide an hour (1m, 2m, 5m, ` +
      `10m …) or seconds that divide a minute, 10s at least (10s, 12s, 15s, 20s, 30s): ${fix}`,
  );
}

export function parseArgs(argv: string[]): SoakArgs {
  const seen = new Map<string, string | undefined>();
  for (let i = 0; i < argv.length; i++) {
    let flag = argv[i]!;
    let value: string | undefined;
    const eq = flag.indexOf('=');
    if (flag === '--help' || flag === '-h') throw new SoakUsageError('help');
    if (flag.startsWith('--') && eq > 0) [flag, value] = [flag.slice(0, eq), flag.slice(eq + 1)];
    else if (flag in LIMITS || TEXT.includes(flag)) value = argv[++i];
    if (!(flag in LIMITS) && !TEXT.includes(flag))
      throw new SoakUsageError(
        `unknown argument ${JSON.stringify(argv[i])}: the options are --minutes, --rate, --tick, ` +
          `--producers, --seed, --out`,
      );
    if (seen.has(flag)) throw new SoakUsageError(`${flag} is given twice: give it once`);
    seen.set(flag, value);
  }
  const get = (flag: string, dflt: number) =>
    seen.has(flag) ? number(flag, seen.get(flag)) : dflt;
  const tick = seen.has('--tick') ? seen.get('--tick') : '1m';
  const tickSeconds = parseTick(tick);
  const minutes = get('--minutes', 30);
  if (minutes * 60 < 6 * tickSeconds)
    throw new SoakUsageError(
      `--minutes ${minutes} sees fewer than 6 ticks of ${tick}, too few for the faults: give ` +
        `--minutes ${Math.ceil((6 * tickSeconds) / 60)} or more, or a shorter tick ` +
        `(e.g. --tick 20s)`,
    );
  const out = seen.get('--out');
  if (seen.has('--out') && (!out || out.startsWith('--')))
    throw new SoakUsageError(
      '--out needs a file name: e.g. npm run soak -- --out bench-results/soak.md',
    );
  return {
    minutes,
    rate: get('--rate', 2000),
    tickSeconds,
    tick: tick!,
    producers: get('--producers', 4),
    seed: get('--seed', 1),
    out: out ?? null,
  };
}

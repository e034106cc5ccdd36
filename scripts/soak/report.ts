/*
 * The soak's final report: markdown tables (readable in a terminal as they are) of the checks,
 * the latency against the tick, the table sizes at the first tick and at the end, the faults
 * and the traffic; the same text goes to --out with the machine and the per-tick lines.
 */
import type { Outcome } from './check.ts';
import type { FaultResult } from './faults.ts';
import type { Sample } from './monitor.ts';

export function markdown(header: string[], rows: (string | number)[][]): string {
  const esc = (v: string | number) => String(v).replace(/\|/g, '\\|');
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

const n = (x: number) => Math.round(x).toLocaleString('en-US');
const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
const s = (x: number | null) => (x === null ? '-' : `${x.toFixed(1)} s`);

export interface ReportInput {
  outcome: Outcome;
  faults: FaultResult[];
  first: Sample;
  last: Sample;
  samples: Sample[];
  tickSeconds: number;
  traffic: [string, string][];
}

/** The tables, and whether the soak passed (no loss, no duplicate, every fault injected). */
export function finalReport(r: ReportInput): { text: string; passed: boolean } {
  const checks = markdown(
    ['check', 'found', 'result'],
    r.outcome.checks.map((c) => [c.check, n(c.found), c.found === 0 ? 'ok' : 'FAIL']),
  );
  const missing = r.outcome.missing.length
    ? '\n\nThe rows told committed that are missing, by producer, kind of send and ten seconds:\n\n' +
      markdown(
        ['producer', 'send', 'sent from', 'to', 'sends', 'rows'],
        r.outcome.missing.map((m) => [
          m.producer,
          m.mode,
          `+${m.from_s} s`,
          `+${m.to_s} s`,
          n(m.sends),
          n(m.rows),
        ]),
      )
    : '';
  const l = r.outcome.latency;
  const latency = markdown(
    ['received_at → processed_at', 'seconds', 'in ticks'],
    [
      ['p50', l.p50.toFixed(1), (l.p50 / r.tickSeconds).toFixed(2)],
      ['p99', l.p99.toFixed(1), (l.p99 / r.tickSeconds).toFixed(2)],
      ['max', l.max.toFixed(1), (l.max / r.tickSeconds).toFixed(2)],
    ],
  );
  const perRow = (bytes: number, live: number) => (live > 0 ? `${n(bytes / live)} B` : '-');
  const maxDead = (pick: (x: Sample) => [number, number]) =>
    Math.max(...r.samples.map((x) => pick(x)[1] / Math.max(pick(x)[0], 1))) * 100;
  const sizes = markdown(
    [
      'table',
      'at the first tick',
      'at the end',
      'bytes per live row',
      'dead at the end',
      'most dead seen',
      'autovacuums',
    ],
    [
      [
        'raw_events',
        `${mb(r.first.rawBytes)} (${n(r.first.rawLive)} rows)`,
        `${mb(r.last.rawBytes)} (${n(r.last.rawLive)} rows)`,
        `${perRow(r.first.rawBytes, r.first.rawLive)} → ${perRow(r.last.rawBytes, r.last.rawLive)}`,
        n(r.last.rawDead),
        `${maxDead((x) => [x.rawLive, x.rawDead]).toFixed(0)}% of live`,
        n(r.last.rawVacuums),
      ],
      [
        'fact_events (all partitions)',
        `${mb(r.first.factBytes)} (${n(r.first.factLive)} rows)`,
        `${mb(r.last.factBytes)} (${n(r.last.factLive)} rows)`,
        `${perRow(r.first.factBytes, r.first.factLive)} → ` +
          `${perRow(r.last.factBytes, r.last.factLive)}`,
        n(r.last.factDead),
        `${maxDead((x) => [x.factLive, x.factDead]).toFixed(0)}% of live`,
        n(r.last.factVacuums),
      ],
    ],
  );
  const faults = markdown(
    ['fault', 'at', 'injected', 'next tick done after', 'figures'],
    r.faults.map((f) => [
      f.fault,
      f.at === null ? '-' : `+${f.at.toFixed(0)} s`,
      f.injected ? 'yes' : 'NO',
      s(f.recovered),
      f.figures,
    ]),
  );
  const traffic = markdown(['traffic', ''], r.traffic);
  const passed =
    r.outcome.checks.every((c) => c.found === 0) &&
    r.faults.every((f) => f.injected && f.recovered !== null);
  const text = [
    '### Checks',
    checks + missing,
    '',
    `### Latency (${n(l.events)} events; tick ${r.tickSeconds} s; rows of reprocessed windows ` +
      'left out)',
    latency,
    '',
    '### Table sizes',
    sizes,
    '',
    '### Faults',
    faults,
    '',
    '### Traffic',
    traffic,
    '',
    passed
      ? 'PASSED: nothing lost, nothing duplicated, every fault injected and survived.'
      : 'FAILED: see the rows marked FAIL or NO above.',
  ].join('\n');
  return { text, passed };
}

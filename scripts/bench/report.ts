/*
 * The benchmark's output: the results table (printed, and written as a small markdown file
 * with the machine, the commit and the date), the bytes per event, and the stage breakdown.
 */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { projectRoot } from '../lib/paths.ts';
import type { Stage } from './measure.ts';

export interface ResultRow {
  contender: string;
  events: number | null;
  seconds: number | null;
  rate: number | null;
  /** Runs behind the median, as "min–max s". */
  spread?: string;
  ratio?: string;
  result?: 'PASS' | 'MISS';
}

export interface BytesRow {
  what: string;
  walPerEvent: number | null;
  tablePerEvent: number | null;
}

export interface StageRow {
  statement: string;
  calls: number;
  ms: number;
  share: number;
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  loadStart: string;
  loadEnd: string;
  postgres: string;
  commit: string;
  date: string;
}

export function machine(postgres: string, loadStart: string): Machine {
  const git = (args: string[]) => {
    try {
      return execFileSync('git', args, {
        cwd: projectRoot,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    } catch {
      return '';
    }
  };
  const dirty = git(['status', '--porcelain', '--', 'sql', 'scripts'])
    ? ' (with uncommitted changes)'
    : '';
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadStart,
    loadEnd: loadNow(),
    postgres,
    commit: (git(['rev-parse', '--short', 'HEAD']) || 'unknown') + dirty,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
}

export const loadNow = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const fmt = (n: number | null, digits = 2) => (n === null ? '' : n.toFixed(digits));

/** A statement as one short line: whitespace collapsed, cut at 90 characters. */
export function statementLabel(query: string): string {
  const s = query
    .replace(/--[^\n]*/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return s.length > 90 ? `${s.slice(0, 87)}...` : s;
}

/** The nested statements of a run, as shares of the run's wall time (the CALL itself left out). */
export function stageRows(stages: Stage[], seconds: number, limit = 10): StageRow[] {
  return stages
    .filter((s) => !/^\s*(call|select pg_stat_statements_reset|checkpoint)\b/i.test(s.query))
    .slice(0, limit)
    .map((s) => ({
      statement: statementLabel(s.query),
      calls: s.calls,
      ms: s.ms,
      share: s.ms / (seconds * 1000),
    }));
}

function grid(header: string[], rows: string[][], markdown: boolean): string {
  if (markdown) {
    const line = (cells: string[]) =>
      `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
    return [line(header), `|${header.map(() => '---').join('|')}|`, ...rows.map(line)].join('\n');
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => ' ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
  return [
    line(header),
    '-' + widths.map((w) => '-'.repeat(w)).join('-+-') + '-',
    ...rows.map(line),
  ].join('\n');
}

export function resultsTable(rows: ResultRow[], markdown: boolean): string {
  return grid(
    ['contender', 'events', 'seconds', 'events/s', 'runs (s)', 'ratio vs target', 'result'],
    rows.map((r) => [
      r.contender,
      r.events === null ? '' : int(r.events),
      fmt(r.seconds),
      r.rate === null ? '' : int(r.rate),
      r.spread ?? '',
      r.ratio ?? '',
      r.result ?? '',
    ]),
    markdown,
  );
}

export function bytesTable(rows: BytesRow[], markdown: boolean): string {
  return grid(
    ['contender', 'WAL bytes/event', 'table+index bytes/event'],
    rows.map((r) => [
      r.what,
      r.walPerEvent === null ? '' : int(r.walPerEvent),
      r.tablePerEvent === null ? '' : int(r.tablePerEvent),
    ]),
    markdown,
  );
}

export function stagesTable(rows: StageRow[], markdown: boolean): string {
  return grid(
    ['statement', 'calls', 'ms', 'share of run'],
    rows.map((r) => [
      markdown ? `\`${r.statement}\`` : r.statement,
      int(r.calls),
      int(r.ms),
      `${(r.share * 100).toFixed(1)}%`,
    ]),
    markdown,
  );
}

export function markdownReport(p: {
  machine: Machine;
  command: string;
  results: ResultRow[];
  bytes: BytesRow[];
  stages: { title: string; rows: StageRow[] }[];
  notes: string[];
}): string {
  const m = p.machine;
  return [
    '# Benchmark results',
    '',
    `\`${p.command}\` on ${m.date}, commit ${m.commit}.`,
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.postgres}; load ` +
      `average ${m.loadStart} at the start, ${m.loadEnd} at the end (the machine is shared: see ` +
      `the runs column for the spread).`,
    '',
    resultsTable(p.results, true),
    '',
    bytesTable(p.bytes, true),
    '',
    ...p.stages.flatMap((s) => [`${s.title}:`, '', stagesTable(s.rows, true), '']),
    ...p.notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
}

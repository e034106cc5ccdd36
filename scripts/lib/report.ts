/* Plain-text tables for the terminal, as psql would print them. */
export function table(rows: Record<string, unknown>[], columns?: string[]): string {
  if (rows.length === 0) return '(no rows)';
  const cols = columns ?? Object.keys(rows[0]!);
  const cell = (v: unknown) =>
    v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => ' ' + vals.map((v, i) => v.padEnd(widths[i]!)).join(' | ');
  return [
    line(cols),
    '-' + widths.map((w) => '-'.repeat(w)).join('-+-') + '-',
    ...rows.map((r) => line(cols.map((c) => cell(r[c])))),
  ].join('\n');
}

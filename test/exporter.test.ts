/*
 * sql/postgres_exporter.yml, the custom queries file of postgres_exporter: every query runs as a
 * login that has only spectrum_operator, returns rows with exactly the columns its metrics
 * declare, numbers where the exporter expects them, the values the pipeline's own views show,
 * and has a plan that never reads raw_events whole.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { projectRoot } from '../scripts/lib/paths.ts';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import { ACCOUNT, fresh, loginRole, valid, type Login } from './helpers/fixtures.ts';

type Usage = 'LABEL' | 'GAUGE' | 'COUNTER';
interface Namespace {
  query: string;
  master?: boolean;
  cache_seconds?: number;
  metrics: Record<string, { usage: Usage; description: string }>[];
}

const file = join(projectRoot, 'sql', 'postgres_exporter.yml');
const namespaces = parse(readFileSync(file, 'utf8')) as Record<string, Namespace>;
const columnsOf = (ns: Namespace) => ns.metrics.map((m) => Object.keys(m)[0]!);
const usageOf = (ns: Namespace, column: string) =>
  ns.metrics.find((m) => column in m)![column]!.usage;

// int2, int4, int8, float4, float8, numeric: what the exporter turns into a float.
const NUMERIC_TYPES = [21, 23, 20, 700, 701, 1700];

let db: TestDb;
let monitor: Login;
// Figures of the result rows, by namespace, then by metric and labels.
const scraped: Record<string, Record<string, number>> = {};

beforeAll(async () => {
  db = await testDatabase('exporter');
  monitor = await loginRole(db, 'monitor', 'spectrum_operator');
  await fresh(db.sql);
  await insertEvents(db.sql, [
    ...valid(6),
    { event_type: 'click', account_id: 'abc' },
    { account_id: ACCOUNT },
    { event_type: 'click', account_id: 'abc', geo: { country: 33 } },
  ]);
  await runPipeline(db.sql, 'p_batch_size => 4');
  // Received an hour ago, still pending.
  await db.sql`
    insert into spectrum.raw_events (payload, received_at)
    values (${db.sql.json(valid(1)[0]!)}, now() - interval '1 hour')`;
});
afterAll(async () => {
  await monitor?.drop();
  await db?.drop();
});

describe('sql/postgres_exporter.yml', () => {
  it('declares namespaces in the format of --extend.query-path', () => {
    expect(Object.keys(namespaces)).toEqual([
      'spectrum_backlog',
      'spectrum_oldest_pending',
      'spectrum_processed',
      'spectrum_runs',
      'spectrum_last_run',
      'spectrum_failures',
    ]);
    for (const [name, ns] of Object.entries(namespaces)) {
      expect(name).toMatch(/^[a-z_][a-z0-9_]*$/);
      expect(
        Object.keys(ns).filter((k) => !['query', 'master', 'cache_seconds', 'metrics'].includes(k)),
      ).toEqual([]);
      expect(ns.master).toBe(true);
      expect(typeof ns.query).toBe('string');
      for (const metric of ns.metrics) {
        const [column, spec] = Object.entries(metric)[0]!;
        expect(Object.keys(metric)).toHaveLength(1);
        expect(column).toMatch(/^[a-z_][a-z0-9_]*$/);
        expect(['LABEL', 'GAUGE', 'COUNTER']).toContain(spec.usage);
        expect(spec.description.length).toBeGreaterThan(10);
      }
      expect(ns.metrics.some((m) => Object.values(m)[0]!.usage !== 'LABEL')).toBe(true);
    }
  });

  it.each(Object.keys(namespaces))(
    '%s runs as spectrum_operator and returns the declared columns, numbers as numbers',
    async (name) => {
      const ns = namespaces[name]!;
      const rows = await monitor.sql.unsafe(ns.query);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.columns.map((c) => c.name).sort()).toEqual(columnsOf(ns).sort());
      const figures: Record<string, number> = {};
      for (const column of rows.columns) {
        const usage = usageOf(ns, column.name);
        if (usage === 'LABEL') continue;
        expect(NUMERIC_TYPES, `${name}.${column.name} type`).toContain(column.type);
        for (const row of rows) {
          const value = Number(row[column.name]);
          expect(row[column.name], `${name}.${column.name}`).not.toBeNull();
          expect(Number.isFinite(value), `${name}.${column.name}`).toBe(true);
          const labels = columnsOf(ns)
            .filter((c) => usageOf(ns, c) === 'LABEL')
            .map((c) => `{${row[c]}}`)
            .join('');
          figures[`${column.name}${labels}`] = value;
        }
      }
      scraped[name] = figures;
    },
  );

  it('shows what the pipeline did', () => {
    expect(scraped.spectrum_backlog).toEqual({
      'events{pending}': 1,
      'events{processing}': 0,
      'events{done}': 6,
      'events{failed}': 3,
    });
    const age = scraped.spectrum_oldest_pending!.age_seconds!;
    expect(age).toBeGreaterThanOrEqual(3600);
    expect(age).toBeLessThan(3600 + 120);
    expect(scraped.spectrum_processed).toEqual({
      'events_total{done}': 6,
      'events_total{failed}': 3,
      'events_total{retried}': 0,
    });
    expect(scraped.spectrum_runs).toEqual({ total: 1 });
    const last = scraped['spectrum_last_run']!;
    const [key] = Object.keys(last).filter((k) => k.startsWith('claimed'));
    expect(key).toBe('claimed{no pending rows}');
    expect(last['done{no pending rows}']).toBe(6);
    expect(last['failed{no pending rows}']).toBe(3);
    expect(last['duration_seconds{no pending rows}']).toBeGreaterThanOrEqual(0);
    // An event with two errors counts under both fields.
    expect(scraped.spectrum_failures).toEqual({
      'events{account_id}': 2,
      'events{event_type}': 1,
      'events{geo.country}': 1,
    });
  });

  it('counts the processed events on, across runs, while the backlog falls', async () => {
    await runPipeline(db.sql);
    const ns = namespaces.spectrum_processed!;
    const rows = await monitor.sql.unsafe(ns.query);
    const done = rows.find((r) => r.outcome === 'done')!;
    expect(Number(done.events_total)).toBe(7);
    const [runs] = await monitor.sql.unsafe(namespaces.spectrum_runs!.query);
    expect(Number(runs!.total)).toBe(2);
    const [oldest] = await monitor.sql.unsafe(namespaces.spectrum_oldest_pending!.query);
    expect(oldest!.age_seconds).toBe(0);
  });

  it.each(Object.keys(namespaces))('%s never reads raw_events whole', async (name) => {
    const plan = await db.sql.begin(async (tx) => {
      // Only a plan with no other way to read the table would scan it now.
      await tx`set local enable_seqscan = off`;
      return tx.unsafe(`explain ${namespaces[name]!.query}`);
    });
    const text = plan.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).not.toMatch(/Seq Scan on raw_events/);
  });
});

/*
 * sql/postgres_exporter.yml, the custom queries file of postgres_exporter: every query runs as a
 * login that has only spectrum_operator, returns rows with exactly the columns its metrics
 * declare, numbers where the exporter expects them, the values the pipeline's own views show,
 * and has a plan that never reads raw_events whole.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
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
beforeAll(async () => {
  db = await testDatabase('exporter');
  monitor = await loginRole(db, 'monitor', 'spectrum_operator');
});
afterAll(async () => {
  await monitor?.drop();
  await db?.drop();
});

// 6 done, 3 failed (one with two errors) in one run, and one pending received an hour ago.
beforeEach(async () => {
  await fresh(db.sql);
  await insertEvents(db.sql, [
    ...valid(6),
    { event_type: 'click', account_id: 'abc' },
    { account_id: ACCOUNT },
    { event_type: 'click', account_id: 'abc', geo: { country: 33 } },
  ]);
  await runPipeline(db.sql, 'p_batch_size => 4');
  await db.sql`
    insert into spectrum.raw_events (payload, received_at)
    values (${db.sql.json(valid(1)[0]!)}, now() - interval '1 hour')`;
});

/**
 * Runs a namespace's query as the monitoring login, checks the columns and values the way
 * postgres_exporter reads them, and returns its figures keyed `column{label}{label}`.
 */
async function scrape(name: string): Promise<Record<string, number>> {
  const ns = namespaces[name]!;
  const rows = await monitor.sql.unsafe(ns.query);
  expect(rows.length, name).toBeGreaterThan(0);
  expect(rows.columns.map((c) => c.name).sort()).toEqual(columnsOf(ns).sort());
  const labels = columnsOf(ns).filter((c) => usageOf(ns, c) === 'LABEL');
  const figures: Record<string, number> = {};
  for (const column of rows.columns) {
    if (usageOf(ns, column.name) === 'LABEL') continue;
    expect(NUMERIC_TYPES, `${name}.${column.name} type`).toContain(column.type);
    for (const row of rows) {
      expect(row[column.name], `${name}.${column.name}`).not.toBeNull();
      const value = Number(row[column.name]);
      expect(Number.isFinite(value), `${name}.${column.name}`).toBe(true);
      figures[column.name + labels.map((c) => `{${row[c]}}`).join('')] = value;
    }
  }
  return figures;
}

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
      expect(Object.keys(await scrape(name)).length).toBeGreaterThan(0);
    },
  );

  it('shows what the pipeline did', async () => {
    const scraped: Record<string, Record<string, number>> = {};
    for (const name of Object.keys(namespaces)) scraped[name] = await scrape(name);
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

  it('finds the fields of spectrum.failure_reasons, unexpected errors included', async () => {
    const [id] = await insertEvents(db.sql, valid(1));
    await db.sql`
      update spectrum.raw_events
         set status = 'failed', processed_at = now(),
             error_msg = 'unexpected error after 5 attempts: 55P03: lock timeout; x: y'
       where id = ${id!}`;
    await db.sql`select spectrum.recount_status()`;
    const fields = await monitor.sql.unsafe(namespaces.spectrum_failures!.query);
    const view = await monitor.sql`
      select field, sum(events) as events from spectrum.failure_reasons group by field`;
    const byField = (rows: readonly Record<string, unknown>[]) =>
      Object.fromEntries(rows.map((r) => [r.field, Number(r.events)]));
    expect(byField(fields)).toEqual(byField(view));
    expect(byField(fields)).toEqual({
      account_id: 2,
      event_type: 1,
      'geo.country': 1,
      'unexpected error': 1,
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

  it.each(Object.keys(namespaces))(
    '%s reads raw_events only through an index condition',
    async (name) => {
      const [row] = await db.sql.begin(async (tx) => {
        // With sequential scans off, a query that can only read the whole table still would.
        await tx`set local enable_seqscan = off`;
        return tx.unsafe(`explain (format json) ${namespaces[name]!.query}`);
      });
      type Node = Record<string, unknown> & { Plans?: Node[] };
      const reads: string[] = [];
      const walk = (node: Node) => {
        if (node['Relation Name'] === 'raw_events')
          reads.push(
            `${node['Node Type']} ${(node['Index Cond'] ?? node['Recheck Cond']) ? 'with' : 'without'} index condition`,
          );
        node.Plans?.forEach(walk);
      };
      walk((row!['QUERY PLAN'] as { Plan: Node }[])[0]!.Plan);
      // pipeline_status reads raw_events; pipeline_runs alone does not.
      expect(reads.length > 0).toBe(/raw_events|pipeline_status/.test(namespaces[name]!.query));
      for (const read of reads)
        expect(read).toMatch(/^(Index|Index Only|Bitmap Heap) Scan with index condition$/);
    },
  );
});

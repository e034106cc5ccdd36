/*
 * The producer's side: COPY into spectrum.raw_events against COPY into a bare table of the
 * same columns and into that table with only a primary key (the order reversed every other
 * round, each into an emptied table); single-row INSERTs from 8 concurrent clients with
 * pgbench, each insert its own transaction.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PG_BIN } from '../lib/cluster.ts';
import { connect } from '../lib/db.ts';
import { copyPayloads, type Dataset } from './load.ts';
import { tableSizes } from './measure.ts';
import type { BenchServer } from './server.ts';

export interface CopyResult {
  table: string;
  seconds: number[];
  walBytes: number[];
  bytes: number;
}

export async function measureCopy(
  server: BenchServer,
  database: string,
  data: Dataset,
  rounds: number,
): Promise<CopyResult[]> {
  const tables = ['spectrum.raw_events', 'bench.raw_bare', 'bench.raw_bare_pk'];
  const results = new Map(
    tables.map((t) => [
      t,
      { table: t, seconds: [] as number[], walBytes: [] as number[], bytes: 0 },
    ]),
  );
  const sql = connect(server.cluster.url(database), { max: 1 });
  try {
    for (let round = 0; round < rounds; round++) {
      for (const table of round % 2 ? [...tables].reverse() : tables) {
        await sql.unsafe(`truncate ${table}`);
        await server.admin`checkpoint`;
        const [before] = await sql`select pg_current_wal_lsn() as lsn`;
        const seconds = await copyPayloads(sql, table, data);
        const [wal] =
          await sql`select pg_wal_lsn_diff(pg_current_wal_lsn(), ${before!.lsn}) as bytes`;
        const r = results.get(table)!;
        r.seconds.push(seconds);
        r.walBytes.push(Number(wal!.bytes));
      }
    }
    const sizes = await tableSizes(sql);
    for (const r of results.values()) r.bytes = sizes[r.table.split('.')[1]!] ?? 0;
    await sql.unsafe(`truncate ${tables.join(', ')}`);
  } finally {
    await sql.end();
  }
  return [...results.values()];
}

export interface PgbenchResult {
  table: string;
  clients: number;
  seconds: number;
  transactions: number;
  tps: number;
}

const PAYLOAD = JSON.stringify({
  event_type: 'event_type_7',
  account_id: '0f8fad5b-d9cb-469f-a165-70867728950e',
  user_id: 'user-17-42',
  timestamp: '2026-01-01T12:00:00.000Z',
  geo: { country: 'FR', region: 'region-7', city: 'city-107' },
  properties: { p0: 412, p1: 'v17', p2: 'v3', p3: 88, p4: 'v61', p5: 'v9', p6: 700, p7: 'v42' },
});

/** pgbench: `clients` sessions each inserting one payload per transaction for `seconds`. */
export function measurePgbench(
  server: BenchServer,
  database: string,
  table: string,
  seconds: number,
  clients = 8,
): PgbenchResult {
  const dir = mkdtempSync(join(tmpdir(), 'spectrum-pgbench-'));
  try {
    const script = join(dir, 'insert.sql');
    // pgbench variables: a different account per insert, like many producers at once.
    writeFileSync(
      script,
      `\\set a random(1, 2000)\ninsert into ${table} (payload) values ` +
        `(jsonb_set('${PAYLOAD}'::jsonb, '{user_id}', to_jsonb('user-' || :a)));\n`,
    );
    const r = spawnSync(
      join(PG_BIN, 'pgbench'),
      [
        '-n',
        '-c',
        String(clients),
        '-j',
        '2',
        '-T',
        String(seconds),
        '-f',
        script,
        '-h',
        '127.0.0.1',
        '-p',
        String(server.cluster.port),
        '-U',
        'postgres',
        database,
      ],
      { encoding: 'utf8' },
    );
    const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout);
    const done = /number of transactions actually processed: (\d+)/.exec(r.stdout);
    if (r.status !== 0 || !tps || !done)
      throw new Error(
        `pgbench failed (status ${r.status}): ` +
          `${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`,
      );
    return { table, clients, seconds, transactions: Number(done[1]), tps: Number(tps[1]) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

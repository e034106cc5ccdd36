/*
 * The benchmark's events: generated once per run (scripts/lib/events.ts, the default spec's
 * shape), held as COPY text in memory so that generating JSON is never part of a timing, and
 * loaded the way a producer would: COPY … FROM STDIN.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Sql } from '../lib/db.ts';
import { generateEvents } from '../lib/events.ts';

export interface Dataset {
  label: string;
  events: number;
  malformed: number;
  /** COPY text (one payload per line), in chunks of about 1 MB. */
  chunks: string[];
  bytes: number;
}

/**
 * The shape the issue asks for: 2,000 accounts, 100,000 users, 500 places, 20 types, 30% without
 * geo, a few retries.
 */
export function makeDataset(
  label: string,
  events: number,
  malformed: number,
  seed = 20260601,
): Dataset {
  const chunks: string[] = [];
  let lines: string[] = [];
  let size = 0;
  let bytes = 0;
  const gen = generateEvents({
    count: events,
    seed,
    accounts: 2000,
    users: 100_000,
    places: 500,
    eventTypes: 20,
    noGeo: 0.3,
    malformed,
    retries: 0.01,
  });
  for (const payload of gen) {
    // COPY text format: a backslash is the escape character; JSON text has no raw tabs or newlines.
    const line = JSON.stringify(payload).replace(/\\/g, '\\\\');
    lines.push(line);
    size += line.length + 1;
    if (size >= 1 << 20) {
      chunks.push(lines.join('\n') + '\n');
      bytes += size;
      lines = [];
      size = 0;
    }
  }
  if (lines.length) chunks.push(lines.join('\n') + '\n');
  bytes += size;
  return { label, events, malformed, chunks, bytes };
}

/** COPY the dataset's payloads into `table` (payload column only); returns the seconds it took. */
export async function copyPayloads(sql: Sql, table: string, data: Dataset): Promise<number> {
  const started = performance.now();
  const writable = await sql.unsafe(`copy ${table} (payload) from stdin`).writable();
  await pipeline(Readable.from(data.chunks), writable);
  return (performance.now() - started) / 1000;
}

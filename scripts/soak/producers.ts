/*
 * The producers: each its own connection as a login role granted spectrum_producer, sending at
 * a steady rate in small batches, each batch by COPY, by one multi-row INSERT, or as single-row
 * INSERTs (each its own transaction). 1% of events are malformed (each kind with the error_msg
 * the pipeline must record), 1% of valid events are sent again later with the same event_id (a
 * client's retry, maybe by another producer), and a refused send is sent again after a pause
 * as new rows with the same event_ids, as a client that was not told "committed" would.
 *
 * The ledger remembers every row sent (its soak_seq, a payload key the pipeline ignores) and
 * what its producer was told: committed, refused, or cut mid-COPY.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { connect, type Sql } from '../lib/db.ts';
import { generateEvents, rng } from '../lib/events.ts';

/** The malformed kinds: how the payload is broken, and the error_msg it must end with. */
export const MALFORMED: { field: string; apply: object; error: string }[] = [
  {
    field: 'account_id',
    apply: { account_id: 'not-a-uuid' },
    error: 'account_id: "not-a-uuid" is not a uuid',
  },
  { field: 'event_type', apply: { event_type: '' }, error: 'event_type: must not be empty' },
  {
    field: 'timestamp',
    apply: { timestamp: 'yesterday' },
    error: 'timestamp: "yesterday" is not an ISO-8601 timestamp',
  },
  {
    field: 'timestamp',
    apply: { timestamp: '1999-01-01T00:00:00Z' },
    error:
      'timestamp: "1999-01-01T00:00:00Z" is outside the accepted window (5 years before to 1 ' +
      'day after received_at)',
  },
  {
    field: 'properties',
    apply: { properties: [1, 2, 3] },
    error: 'properties: [1, 2, 3] is not an object',
  },
  { field: 'geo', apply: { geo: 'Paris' }, error: 'geo: "Paris" is not an object' },
  {
    field: 'user_id',
    apply: { user_id: { id: 7 } },
    error: 'user_id: {"id": 7} is not a string or number',
  },
];

export type Outcome = 'in flight' | 'committed' | 'refused' | 'cut';
export type Mode = 'copy' | 'insert' | 'single';

/** A producer asked to send its next batch, of at least `rows`, as a slow COPY. */
export interface CutRequest {
  producer: number;
  rows: number;
  outcome?: Outcome;
}

export interface Send {
  producer: number;
  mode: Mode;
  /** soak_seq of its first row; its rows are first … first + count - 1. */
  first: number;
  count: number;
  outcome: Outcome;
  /** SQLSTATE (or client error code) of a refusal. */
  code?: string;
  at: number;
}

/** Every row sent: its event number and kind (0 valid, k > 0 MALFORMED[k - 1]), by soak_seq. */
export class Ledger {
  eventNo = new Int32Array(1 << 16);
  kind = new Uint8Array(1 << 16);
  rows = 0;
  sends: Send[] = [];
  events = 0;

  row(eventNo: number, kind: number): number {
    if (this.rows === this.eventNo.length) {
      const e = new Int32Array(this.rows * 2);
      e.set(this.eventNo);
      this.eventNo = e;
      const k = new Uint8Array(this.rows * 2);
      k.set(this.kind);
      this.kind = k;
    }
    this.eventNo[this.rows] = eventNo;
    this.kind[this.rows] = kind;
    return this.rows++;
  }

  count(outcome: Outcome, since = 0): { sends: number; rows: number } {
    let sends = 0;
    let rows = 0;
    for (const s of this.sends)
      if (s.outcome === outcome && s.at >= since) {
        sends++;
        rows += s.count;
      }
    return { sends, rows };
  }
}

/** An event's id: a run tag, then its number (a valid uuid, version 4 layout). */
export const eventId = (tag: string, n: number) =>
  `${tag}-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;

interface Pending {
  eventNo: number;
  kind: number;
  payload: Record<string, unknown>;
}

export interface ProducerOptions {
  url: string;
  producers: number;
  rate: number;
  seed: number;
  tag: string;
  ledger: Ledger;
  /** Seconds since the soak started. */
  clock: () => number;
}

export class Producers {
  private stopping = false;
  private loops: Promise<void>[] = [];
  private retries: { due: number; item: Pending }[] = [];
  private nextEvent = 0;
  cutRequest: CutRequest | null = null;
  readonly connections: Sql[] = [];

  constructor(private o: ProducerOptions) {}

  get count(): number {
    return this.o.producers;
  }

  private open(k: number): Sql {
    const sql = connect(this.o.url, {
      max: 1,
      idle_timeout: 0,
      connect_timeout: 5,
      connection: { application_name: `soak-producer-${k}` },
    });
    this.connections[k - 1] = sql;
    return sql;
  }

  start(): void {
    for (let k = 1; k <= this.o.producers; k++) this.loops.push(this.loop(k));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
    await Promise.all(this.connections.map((c) => c.end({ timeout: 5 }).catch(() => {})));
  }

  /** Rows committed so far, all producers. */
  committed = 0;

  private async loop(k: number): Promise<void> {
    this.open(k);
    const random = rng(this.o.seed * 1000 + k);
    const source = generateEvents({
      count: Number.MAX_SAFE_INTEGER,
      seed: this.o.seed * 1000 + k,
      malformed: 0,
      retries: 0,
    });
    const perSecond = this.o.rate / this.o.producers;
    let tokens = 0;
    let last = this.o.clock();
    let resend: Pending[] = [];
    while (!this.stopping) {
      await new Promise((r) => setTimeout(r, 100 + random() * 300));
      const now = this.o.clock();
      // A stall (a crash, a full disk) is caught up on, up to ten seconds of events.
      tokens = Math.min(tokens + (now - last) * perSecond, 10 * perSecond);
      last = now;
      const batch: Pending[] = resend.splice(0, Math.floor(tokens));
      for (let i = 0; i < this.retries.length && batch.length < tokens;)
        if (this.retries[i]!.due <= now) batch.push(this.retries.splice(i, 1)[0]!.item);
        else i++;
      const cut = this.cutRequest?.producer === k && !this.cutRequest.outcome;
      // A COPY to be cut is long enough to be caught mid-way.
      const want = cut ? Math.max(Math.floor(tokens), this.cutRequest!.rows) : Math.floor(tokens);
      while (batch.length < want) {
        const payload = source.next().value as Record<string, unknown>;
        const eventNo = this.nextEvent++;
        payload.event_id = eventId(this.o.tag, eventNo);
        let kind = 0;
        if (random() < 0.01) {
          kind = 1 + Math.floor(random() * MALFORMED.length);
          Object.assign(payload, MALFORMED[kind - 1]!.apply);
        }
        batch.push({ eventNo, kind, payload });
      }
      if (batch.length === 0) continue;
      tokens -= batch.length;
      this.o.ledger.events = this.nextEvent;
      const pick = random();
      const mode: Mode = cut ? 'copy' : pick < 0.45 ? 'copy' : pick < 0.9 ? 'insert' : 'single';
      const refused = await this.send(k, mode, batch, cut);
      if (refused.length) {
        resend = [...refused, ...resend];
        await new Promise((r) => setTimeout(r, 500));
      } else {
        for (const item of batch)
          if (item.kind === 0 && random() < 0.01)
            this.retries.push({
              due: now + 1 + random() * 20,
              item: { ...item, payload: { ...item.payload, retried_at: now } },
            });
      }
    }
  }

  /** Sends a batch; returns the events to send again (those of refused sends). */
  private async send(k: number, mode: Mode, batch: Pending[], cut: boolean): Promise<Pending[]> {
    // Single-row INSERTs (each its own transaction) for a few rows, the rest of the batch in
    // one INSERT: a batch of single rows would fall behind the rate.
    const groups =
      mode === 'single'
        ? [...batch.slice(0, 5).map((b) => [b]), ...(batch.length > 5 ? [batch.slice(5)] : [])]
        : [batch];
    const again: Pending[] = [];
    for (const group of groups) {
      const s: Send = {
        producer: k,
        mode: mode === 'single' && group.length > 1 ? 'insert' : mode,
        first: this.o.ledger.rows,
        count: group.length,
        outcome: 'in flight',
        at: this.o.clock(),
      };
      const texts = group.map((g) =>
        JSON.stringify({ ...g.payload, soak_seq: this.o.ledger.row(g.eventNo, g.kind) }),
      );
      this.o.ledger.sends.push(s);
      const sql = this.connections[k - 1]!;
      let timer: NodeJS.Timeout | undefined;
      try {
        const work =
          mode === 'copy'
            ? copy(sql, texts, cut)
            : group.length > 1
              ? // text, then jsonb in SQL: a jsonb parameter would be encoded once more.
                sql`insert into spectrum.raw_events (payload)
                    select pg_catalog.unnest(${texts}::text[])::jsonb`
              : sql`insert into spectrum.raw_events (payload) values (${texts[0]!}::text::jsonb)`;
        // A send the server never answers (its connection died under a COPY) is given up.
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(Object.assign(new Error('no answer'), { code: 'TIMEOUT' })),
            SEND_TIMEOUT_MS,
          );
        });
        await Promise.race([work, timeout]);
        s.outcome = 'committed';
        this.committed += group.length;
      } catch (e) {
        s.outcome = cut ? 'cut' : 'refused';
        s.code = (e as { code?: string }).code ?? 'unknown';
        again.push(...group);
        // Anything but an SQL error (5-character SQLSTATE), or a COPY refused (the client
        // library leaves its connection waiting for the rest of the copy): a new connection.
        if (
          mode === 'copy' ||
          !/^[0-9A-Z]{5}$/.test(s.code) ||
          s.code.startsWith('57P') ||
          s.code.startsWith('08')
        ) {
          void sql.end({ timeout: 0 }).catch(() => {});
          this.open(k);
        }
      } finally {
        clearTimeout(timer);
      }
      if (cut) this.cutRequest!.outcome = s.outcome;
    }
    return again;
  }
}

const SEND_TIMEOUT_MS = 30_000;

/** COPY … FROM STDIN; a cut one is streamed slowly (about 3 s) so it can be cut mid-way. */
async function copy(sql: Sql, texts: string[], slow: boolean): Promise<void> {
  // COPY text format: a backslash is the escape character; JSON has no raw tabs or newlines.
  const lines = texts.map((t) => t.replace(/\\/g, '\\\\') + '\n');
  const chunks: string[] = [];
  const per = slow ? Math.max(1, Math.ceil(lines.length / 30)) : 2000;
  for (let i = 0; i < lines.length; i += per) chunks.push(lines.slice(i, i + per).join(''));
  async function* paced() {
    for (const c of chunks) {
      yield c;
      if (slow) await new Promise((r) => setTimeout(r, 100));
    }
  }
  const query = sql.unsafe('copy spectrum.raw_events (payload) from stdin');
  const writable = await query.writable();
  // The query settles with the server's answer, the stream when its data is written: an error
  // from the server (a full disk) may come before the stream ends, and only the query says so.
  await Promise.all([pipeline(Readable.from(paced()), writable), query]);
}

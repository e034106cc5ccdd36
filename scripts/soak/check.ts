/*
 * The final checks, after the final tick: the ledger (every row sent, and what its producer was
 * told) is copied into the database next to raw_events and compared in SQL. Nothing told
 * committed may be missing, no row may appear twice, a refused send appears whole or not at
 * all and a cut COPY not at all, every valid event has exactly one fact (its newest version),
 * every malformed one is failed with its reason, nothing is pending, the status counters agree.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Sql } from '../lib/db.ts';
import { eventId, MALFORMED, type Ledger } from './producers.ts';

export interface Check {
  check: string;
  found: number;
  /** True when found must be 0 for the soak to pass. */
  mustBeZero: boolean;
}

export interface Latency {
  events: number;
  p50: number;
  p99: number;
  max: number;
}

export interface Missing {
  producer: number;
  mode: string;
  from_s: number;
  to_s: number;
  sends: number;
  rows: number;
}

export interface Outcome {
  /** The rows told committed that are missing, by producer, kind of send and ten seconds. */
  missing: Missing[];
  checks: Check[];
  latency: Latency;
  counts: Record<string, number>;
}

async function loadLedger(sql: Sql, ledger: Ledger, tag: string): Promise<void> {
  await sql.unsafe(`
    drop table if exists soak.sent;
    create unlogged table soak.sent (
      seq bigint primary key, event_id uuid not null, kind integer not null,
      send integer not null, outcome text not null, mode text not null, at float8 not null,
      producer integer not null);`);
  function* lines() {
    let buf = '';
    for (let i = 0; i < ledger.sends.length; i++) {
      const s = ledger.sends[i]!;
      for (let seq = s.first; seq < s.first + s.count; seq++) {
        buf +=
          `${seq}\t${eventId(tag, ledger.eventNo[seq]!)}\t${ledger.kind[seq]}\t${i}\t` +
          `${s.outcome}\t${s.mode}\t${s.at}\t${s.producer}\n`;
        if (buf.length > 1 << 20) {
          yield buf;
          buf = '';
        }
      }
    }
    if (buf) yield buf;
  }
  const w = await sql.unsafe('copy soak.sent from stdin').writable();
  await pipeline(Readable.from(lines()), w);
  await sql.unsafe(`
    drop table if exists soak.raw;
    create unlogged table soak.raw as
      select (payload->>'soak_seq')::bigint as seq, (payload->>'event_id')::uuid as event_id,
             id, status, error_msg, received_at, processed_at
        from spectrum.raw_events;
    create index on soak.raw (seq);
    analyze soak.sent;
    analyze soak.raw;`);
}

const one = async (sql: Sql, query: string, params: unknown[] = []): Promise<number> => {
  const [r] = await sql.unsafe(query, params as never[]);
  return Number(Object.values(r!)[0]);
};

export async function finalChecks(
  sql: Sql,
  ledger: Ledger,
  tag: string,
  reprocessed: { after: Date; before: Date }[],
): Promise<Outcome> {
  await loadLedger(sql, ledger, tag);
  const errors = MALFORMED.map((m) => m.error);
  const q = (check: string, query: string, params: unknown[] = []) =>
    one(sql, query, params).then((found) => ({ check, found, mustBeZero: true }));
  const checks: Check[] = [
    await q(
      'rows told committed, missing from raw_events',
      `select count(*) from soak.sent s
        where s.outcome = 'committed' and not exists (select from soak.raw r where r.seq = s.seq)`,
    ),
    await q(
      'rows in raw_events twice',
      `select count(*) from (select seq from soak.raw group by seq having count(*) > 1) d`,
    ),
    await q(
      'rows in raw_events that no producer sent',
      `select count(*) from soak.raw r
        where r.seq is null or not exists (select from soak.sent s where s.seq = r.seq)`,
    ),
    await q(
      'refused sends that appear in part',
      `select count(*) from (select s.send from soak.sent s left join soak.raw r using (seq)
                              where s.outcome = 'refused'
                              group by s.send having count(r.seq) not in (0, count(*))) p`,
    ),
    await q(
      'rows of COPYs cut mid-way that appear',
      `select count(*) from soak.sent s join soak.raw r using (seq) where s.outcome = 'cut'`,
    ),
    await q(
      'sends never answered',
      `select count(distinct send) from soak.sent where outcome = 'in flight'`,
    ),
    await q(
      "rows whose event_id is not their send's",
      `select count(*) from soak.raw r join soak.sent s using (seq)
        where r.event_id is distinct from s.event_id`,
    ),
    await q(
      'rows pending or processing after the final tick',
      `select count(*) from soak.raw where status in ('pending', 'processing')`,
    ),
    await q(
      'valid rows not done',
      `select count(*) from soak.raw r join soak.sent s using (seq)
        where s.kind = 0 and r.status <> 'done'`,
    ),
    await q(
      'valid events without a fact',
      `select count(*) from (select distinct r.event_id from soak.raw r join soak.sent s using (seq)
                              where s.kind = 0) v
        where not exists (select from spectrum.fact_events f where f.event_id = v.event_id)`,
    ),
    await q(
      'events with more than one fact',
      `select count(*) from (select event_id from spectrum.fact_events
                              group by event_id having count(*) > 1) d`,
    ),
    await q(
      "facts that are not their event's newest version",
      `with newest as (
         select distinct on (r.event_id) r.event_id, r.id
           from soak.raw r join soak.sent s using (seq)
          where s.kind = 0
          order by r.event_id, r.received_at desc, r.id desc)
       select count(*) from newest n join spectrum.fact_events f using (event_id)
        where f.raw_event_id <> n.id`,
    ),
    await q(
      'facts of no valid event',
      `select count(*) from spectrum.fact_events f
        where not exists (select from soak.raw r join soak.sent s using (seq)
                           where s.kind = 0 and r.event_id = f.event_id)`,
    ),
    await q(
      'malformed rows not failed with their reason',
      `select count(*) from soak.raw r join soak.sent s using (seq)
        where s.kind > 0
          and (r.status <> 'failed' or r.error_msg is distinct from ($1::text[])[s.kind])`,
      [errors],
    ),
    await q(
      'malformed events with a fact',
      `select count(*) from soak.raw r join soak.sent s using (seq)
        where s.kind > 0 and exists (select from spectrum.fact_events f
                                      where f.event_id = r.event_id)`,
    ),
    await q(
      'pipeline_status counts that differ from the rows',
      `select count(*) from spectrum.pipeline_status p
         left join (select status, count(*) as n from spectrum.raw_events group by status) r
           using (status)
        where p.events <> coalesce(r.n, 0)`,
    ),
  ];

  const afters = reprocessed.map((w) => w.after.toISOString());
  const befores = reprocessed.map((w) => w.before.toISOString());
  const [lat] = await sql.unsafe(
    `select count(*)::float8 as events,
            percentile_cont(0.5) within group (order by x)::float8 as p50,
            percentile_cont(0.99) within group (order by x)::float8 as p99,
            max(x)::float8 as max
       from (select extract(epoch from processed_at - received_at) as x, received_at
               from soak.raw where processed_at is not null) l
      where not exists (select from unnest($1::text[], $2::text[]) w(a, b)
                         where l.received_at >= w.a::timestamptz
                           and l.received_at < w.b::timestamptz)`,
    [afters, befores] as never[],
  );
  const [c] = await sql.unsafe(`
    select (select count(*) from soak.raw)::float8 as raw_rows,
           (select count(distinct event_id) from soak.raw)::float8 as events,
           (select count(*) from soak.raw r join soak.sent s using (seq) where s.kind > 0)::float8
             as malformed_rows,
           (select count(*) from (select event_id from soak.raw group by event_id
                                   having count(*) > 1) d)::float8 as events_sent_twice,
           (select count(*) from spectrum.fact_events)::float8 as facts`);
  // Where the rows told committed but missing come from: by producer, kind of send and second.
  const missing = checks[0]!.found
    ? await sql.unsafe(`
        select s.producer, s.mode, floor(min(s.at))::int as from_s, ceil(max(s.at))::int as to_s,
               count(distinct s.send)::int as sends, count(*)::int as rows
          from soak.sent s
         where s.outcome = 'committed' and not exists (select from soak.raw r where r.seq = s.seq)
         group by s.producer, s.mode, floor(s.at / 10)
         order by from_s, s.producer, s.mode`)
    : [];
  return {
    missing: missing as unknown as Missing[],
    checks,
    latency: lat as unknown as Latency,
    counts: c as unknown as Record<string, number>,
  };
}

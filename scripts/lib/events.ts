/*
 * A deterministic generator of realistic payloads in the default spec's shape, used by the
 * demo batch of `npm start`, the benchmark and tests. Seeded, so a run can be repeated.
 */
import { createHash } from 'node:crypto';

export interface GeneratorOptions {
  count: number;
  seed?: number;
  accounts?: number;
  users?: number;
  places?: number;
  eventTypes?: number;
  /** Fraction of events that are malformed (0.01 = 1%). */
  malformed?: number;
  /** Fraction of events sent twice (a producer retry with the same event_id). */
  retries?: number;
  /** Fraction of events without geo. */
  noGeo?: number;
  now?: Date;
}

/** mulberry32: small, fast, good enough for test data. */
export function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A stable uuid (v4 layout) derived from a label. */
export function uuidFrom(label: string): string {
  const h = createHash('md5').update(label).digest('hex');
  const [a, b, c, d, e] = [
    h.slice(0, 8),
    h.slice(8, 12),
    h.slice(13, 16),
    h.slice(17, 20),
    h.slice(20, 32),
  ];
  return `${a}-${b}-4${c}-a${d}-${e}`;
}

const COUNTRIES = ['FR', 'DE', 'US', 'BR', 'JP', 'IN', 'NG', 'GB', 'ES', 'CA'];

const MALFORMED: ((p: Record<string, unknown>) => Record<string, unknown>)[] = [
  (p) => ({ ...p, account_id: 'not-a-uuid' }),
  (p) => ({ ...p, event_type: undefined }),
  (p) => ({ ...p, timestamp: 'yesterday' }),
  (p) => ({ ...p, event_type: '' }),
  (p) => ({ ...p, properties: [1, 2, 3] }),
  (p) => ({ ...p, geo: 'Paris' }),
  (p) => ({ ...p, timestamp: '1999-01-01T00:00:00Z' }),
  (p) => ({ ...p, user_id: { id: 7 } }),
];

export function* generateEvents(o: GeneratorOptions): Generator<Record<string, unknown>> {
  const r = rng(o.seed ?? 42);
  const accounts = o.accounts ?? 2000;
  const users = o.users ?? 100_000;
  const places = o.places ?? 500;
  const types = o.eventTypes ?? 20;
  const now = (o.now ?? new Date()).getTime();
  let pendingRetry: Record<string, unknown> | null = null;
  for (let i = 0; i < o.count; i++) {
    if (pendingRetry) {
      yield pendingRetry;
      pendingRetry = null;
      continue;
    }
    const account = Math.floor(r() * accounts);
    const user = Math.floor(r() * (users / accounts));
    const place = Math.floor(r() * places);
    const props: Record<string, unknown> = {};
    const nProps = 5 + Math.floor(r() * 11);
    for (let k = 0; k < nProps; k++)
      props[`p${k}`] = k % 3 === 0 ? Math.floor(r() * 1000) : `v${Math.floor(r() * 100)}`;
    let p: Record<string, unknown> = {
      event_id: uuidFrom(`event-${o.seed ?? 42}-${i}`),
      event_type: `event_type_${Math.floor(r() * types)}`,
      account_id: uuidFrom(`account-${account}`),
      timestamp: new Date(now - Math.floor(r() * 7 * 86_400_000)).toISOString(),
      properties: props,
    };
    if (r() < 0.9) p.user_id = `user-${account}-${user}`;
    if (r() >= (o.noGeo ?? 0.3))
      p.geo = {
        country: COUNTRIES[place % COUNTRIES.length],
        region: `region-${place % 50}`,
        city: `city-${place}`,
      };
    if (r() < (o.malformed ?? 0)) {
      p = MALFORMED[Math.floor(r() * MALFORMED.length)]!(p);
      for (const k of Object.keys(p)) if (p[k] === undefined) delete p[k];
    } else if (r() < (o.retries ?? 0)) {
      pendingRetry = { ...p, properties: { ...props, retry: true } };
    }
    yield p;
  }
}

/*
 * The spec → model step refuses what the generator cannot carry, naming the spec entry; the
 * emitters are deterministic and let payload keys reach SQL only as quoted literals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emitAll } from '../scripts/emit/index.ts';
import { eventSpec } from '../scripts/spec/event-spec.ts';
import { buildModel } from '../scripts/spec/model.ts';
import type { EventSpec, FieldSpec } from '../scripts/spec/types.ts';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';

const spec = (change: (s: EventSpec) => void = () => {}): EventSpec => {
  const s = structuredClone(eventSpec);
  change(s);
  return s;
};
const field = (s: EventSpec, name: string) => s.fields.find((f) => f.name === name)!;
const add =
  (...fields: FieldSpec[]) =>
  (s: EventSpec) =>
    void s.fields.push(...fields);

/** The SpecError's message for a spec; fails the test when the spec is accepted. */
function refusal(s: EventSpec): string {
  try {
    buildModel(s);
  } catch (e) {
    expect((e as Error).name).toBe('SpecError');
    return (e as Error).message;
  }
  throw new Error('the spec was accepted');
}

describe('the spec model refuses, naming the spec entry', () => {
  it('accepts the default spec', () => {
    const m = buildModel(eventSpec);
    expect(m.fields.map((f) => f.name)).toEqual(eventSpec.fields.map((f) => f.name));
    expect(m.dims.geography.map((f) => f.name)).toEqual(['country', 'region', 'city']);
    expect(m.parents).toEqual([['geo']]);
  });

  it('an unknown type', () => {
    expect(refusal(spec((s) => void (field(s, 'city').type = 'money' as never)))).toContain(
      'fields[7] (city): unknown type "money"',
    );
  });

  it('a name that is not lowercase snake_case', () => {
    for (const bad of ['City', 'city-name', '1city', 'ville_é', ''])
      expect(refusal(spec((s) => void (field(s, 'city').name = bad))), bad).toContain(
        `fields[7] (${bad}): name must be lowercase snake_case`,
      );
  });

  it('a name longer than 63 bytes, and accepts 63', () => {
    expect(
      refusal(spec(add({ name: 'x'.repeat(64), path: ['x'], type: 'text', target: 'fact' }))),
    ).toContain(`fields[9] (${'x'.repeat(64)}): name is longer than 63 bytes`);
    expect(() =>
      buildModel(spec(add({ name: 'x'.repeat(63), path: ['x'], type: 'text', target: 'fact' }))),
    ).not.toThrow();
  });

  it('a name the generated tables use, or an SQL keyword', () => {
    for (const name of ['received_at', 'geo_id', 'first_seen_at', 'raw_event_id'])
      expect(
        refusal(spec(add({ name, path: ['x'], type: 'text', target: 'fact' }))),
        name,
      ).toContain(`fields[9] (${name}): name "${name}" is reserved`);
    for (const name of ['order', 'user', 'from', 'column'])
      expect(
        refusal(spec(add({ name, path: ['x'], type: 'text', target: 'accounts' }))),
        name,
      ).toContain(`fields[9] (${name}): name "${name}" is an SQL keyword`);
  });

  it('a duplicate name', () => {
    expect(
      refusal(spec(add({ name: 'country', path: ['country'], type: 'text', target: 'fact' }))),
    ).toContain('fields[9] (country): duplicate name: fields[5] has it already');
  });

  it('a missing core role', () => {
    const msg = refusal(
      spec((s) => void (s.fields = s.fields.filter((f) => f.role !== 'user_id'))),
    );
    expect(msg).toContain('fields: no field has role user_id');
  });

  it('a core role with the wrong type, or a role field not named after its role', () => {
    expect(refusal(spec((s) => void (field(s, 'event_id').type = 'text')))).toContain(
      'fields[0] (event_id): role event_id must have type uuid',
    );
    expect(refusal(spec((s) => void (field(s, 'account_id').type = 'text')))).toContain(
      'fields[2] (account_id): role account_id must have type uuid',
    );
    expect(refusal(spec((s) => void (field(s, 'event_type').name = 'kind')))).toContain(
      'fields[1] (kind): a field with role event_type must be named event_type',
    );
  });

  it('a core role without what it needs: required or its default', () => {
    expect(refusal(spec((s) => void (field(s, 'account_id').required = false)))).toContain(
      'fields[2] (account_id): account_id must be required',
    );
    expect(refusal(spec((s) => void delete field(s, 'occurred_at').default))).toContain(
      "fields[4] (occurred_at): occurred_at needs default 'received_at'",
    );
  });

  it('a field with both or neither of role and target, or an unknown one', () => {
    expect(refusal(spec(add({ name: 'x', path: ['x'], type: 'text' })))).toContain(
      'fields[9] (x): needs a role',
    );
    expect(
      refusal(spec(add({ name: 'x', path: ['x'], type: 'text', target: 'sessions' as never }))),
    ).toContain('fields[9] (x): unknown target "sessions"');
    expect(refusal(spec((s) => void (field(s, 'city').role = 'user_id')))).toContain(
      'fields[7] (city): has both role and target',
    );
  });

  it('a default or an option on a type it does not apply to', () => {
    expect(
      refusal(
        spec(
          add({
            name: 'seen',
            path: ['seen'],
            type: 'text',
            target: 'fact',
            default: 'received_at',
          }),
        ),
      ),
    ).toContain("fields[9] (seen): default 'received_at' applies only to timestamptz fields");
    expect(
      refusal(spec(add({ name: 'n', path: ['n'], type: 'integer', target: 'fact', trim: true }))),
    ).toContain('fields[9] (n): trim applies only to text fields');
  });

  it('a bad path', () => {
    expect(refusal(spec((s) => void (field(s, 'city').path = [])))).toContain(
      'fields[7] (city): path must be a non-empty list',
    );
    expect(refusal(spec((s) => void (field(s, 'city').path = ['geo', ''])))).toContain(
      'fields[7] (city): path must be a non-empty list',
    );
  });

  it('a path that is also the parent of other fields', () => {
    expect(
      refusal(spec(add({ name: 'geo_raw', path: ['geo'], type: 'object', target: 'fact' }))),
    ).toContain('fields[9] (geo_raw): path geo is also the parent of country, region, city');
  });

  it('bad limits and windows', () => {
    expect(refusal(spec((s) => void (s.limits.maxPayloadBytes = 0)))).toContain(
      'limits.maxPayloadBytes: must be a positive integer, got 0',
    );
    expect(refusal(spec((s) => void (s.limits.maxTextLength = 1.5)))).toContain(
      'limits.maxTextLength: must be a positive integer, got 1.5',
    );
    expect(refusal(spec((s) => void (s.window.before = '5 yrs')))).toContain(
      `window.before: must look like '5 years' or '1 day', got "5 yrs"`,
    );
    expect(refusal(spec((s) => void (s.window.after = "1 day'; drop table x; --")))).toContain(
      'window.after: must look like',
    );
  });

  it('lists every problem at once', () => {
    const msg = refusal(
      spec((s) => {
        s.limits.maxTextLength = -1;
        field(s, 'city').type = 'money' as never;
        field(s, 'region').name = 'Region';
      }),
    );
    for (const entry of [
      'limits.maxTextLength:',
      'fields[6] (Region):',
      'fields[7] (city): unknown type',
    ])
      expect(
        msg.split('\n').some((l) => l.startsWith(`  ${entry}`)),
        entry,
      ).toBe(true);
  });
});

describe('the emitters', () => {
  it('are deterministic: the same model gives the same text', () => {
    const a = emitAll(buildModel(eventSpec));
    const b = emitAll(buildModel(structuredClone(eventSpec)));
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [file, text] of a) expect(b.get(file), file).toBe(text);
  });

  describe('quoting', () => {
    // Keys a producer may send: quotes, a backslash, an injection attempt, unicode.
    const hostile = `x'); drop table spectrum.raw_events; --`;
    const parent = `o'k\\"q`;
    const odd = spec(
      add(
        { name: 'odd', path: [parent, hostile], type: 'text', target: 'fact' },
        { name: 'tier', path: ['plan\\\'s "tier"', 'ünï'], type: 'text', target: 'accounts' },
      ),
    );
    let db: TestDb;
    beforeAll(async () => {
      db = await testDatabase('spec_quoting');
    });
    afterAll(async () => db?.drop());

    it('payload keys appear in the SQL only inside quoted literals', () => {
      const text = [...emitAll(buildModel(odd)).values()].join('\n');
      expect(text).toContain(`'x''); drop table spectrum.raw_events; --'`);
      // On every line that mentions the hostile key, it sits inside a single-quoted literal.
      const lines = text.split('\n').filter((l) => l.includes('drop table spectrum.raw_events'));
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines)
        expect(l.replace(/'(?:[^']|'')*'/g, "''"), l).not.toContain('drop table');
    });

    it('a key with a line break stays inside the comment of the legend', () => {
      const key = 'two\nlines); drop table spectrum.raw_events; --';
      const nl = spec(add({ name: 'nl', path: [key], type: 'text', target: 'fact' }));
      for (const [file, text] of emitAll(buildModel(nl))) {
        const start = text.indexOf('-- Legend');
        if (start < 0) continue;
        const legend = text.slice(start, text.indexOf('\ncreate or replace', start)).trim();
        for (const l of legend.split('\n')) expect(l, file).toMatch(/^--/);
        expect(legend, file).toContain("payload -> 'two\\nlines); drop table");
      }
    });

    it('the emitted SQL applies to a deployed database and extracts those keys', async () => {
      for (const [file, text] of emitAll(buildModel(odd)))
        await db.sql.unsafe(text).catch((e) => Promise.reject(new Error(`${file}: ${e.message}`)));
      const account = '6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b';
      const payload = {
        event_type: 'odd',
        account_id: account,
        [parent]: { [hostile]: 'value' },
        ['plan\\\'s "tier"']: { ünï: 'gold' },
      };
      const [x] = await db.sql`
          select error_msg, odd, tier from spectrum.extract_event(${db.sql.json(payload)})`;
      expect(x).toEqual({ error_msg: null, odd: 'value', tier: 'gold' });
      const [bad] = await db.sql`
          select error_msg
            from spectrum.extract_event(${db.sql.json({ ...payload, [parent]: 'flat' })})`;
      expect(bad!.error_msg).toBe(`${parent}: "flat" is not an object`);

      await insertEvents(db.sql, [payload]);
      await runPipeline(db.sql);
      const [fact] = await db.sql`select odd from spectrum.fact_events where event_type = 'odd'`;
      expect(fact!.odd).toBe('value');
      const [dim] =
        await db.sql`select tier from spectrum.dim_accounts where account_id = ${account}`;
      expect(dim!.tier).toBe('gold');
      const [raw] = await db.sql`select count(*)::int as n from spectrum.raw_events`;
      expect(raw!.n).toBe(1);
    });
  });
});

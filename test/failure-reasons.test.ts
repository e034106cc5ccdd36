/*
 * spectrum.failure_reasons: why events failed, grouped by field and problem without the
 * values, with the latest example of each. Each test starts from the same nine events, six
 * of them failed.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { insertEvents, runPipeline, testDatabase, type TestDb } from './helpers/db.ts';
import { ACCOUNT, fresh, loginRole, valid, type Login } from './helpers/fixtures.ts';

let db: TestDb;
let operator: Login;
beforeAll(async () => {
  db = await testDatabase('failure_reasons');
  operator = await loginRole(db, 'op', 'spectrum_operator');
});
afterAll(async () => {
  await operator?.drop();
  await db?.drop();
});

describe('spectrum.failure_reasons', () => {
  beforeEach(async () => {
    await fresh(db.sql);
    await insertEvents(db.sql, [
      ...valid(3),
      { event_type: 'click', account_id: 'abc' },
      { event_type: 'click', account_id: 'a; b' },
      { event_type: 'click', account_id: 12 },
      { account_id: ACCOUNT },
      { account_id: ACCOUNT, user_id: 'x'.repeat(201) },
      { event_type: 'click', account_id: 'zzz', user_id: { no: 1 } },
    ]);
    await runPipeline(db.sql);
  });

  it(
    'groups failed rows by field and problem, without the values, ' + 'most frequent first',
    async () => {
      const rows = await db.sql`select field, problem, events::int from spectrum.failure_reasons`;
      expect(rows).toEqual([
        { field: 'account_id', problem: 'is not a uuid', events: 4 },
        { field: 'event_type', problem: 'missing', events: 2 },
        { field: 'user_id', problem: 'is not a string or number', events: 1 },
        {
          field: 'user_id',
          problem: 'text of N characters exceeds limits.maxTextLength (200)',
          events: 1,
        },
      ]);
    },
  );

  it('shows the latest example: a failed raw id with that error', async () => {
    const rows = await db.sql`
      select r.field, r.example_error, e.status, e.error_msg,
             r.last_failed_at = e.processed_at as latest
        from spectrum.failure_reasons r join spectrum.raw_events e on e.id = r.example_raw_id`;
    expect(rows).toHaveLength(4);
    for (const r of rows) {
      expect(r.status).toBe('failed');
      expect(r.error_msg).toContain(r.example_error);
      expect(r.example_error.startsWith(`${r.field}: `)).toBe(true);
      expect(r.latest).toBe(true);
    }
  });

  it('is readable by the operator role', async () => {
    const rows = await operator.sql`select * from spectrum.failure_reasons`;
    expect(rows).toHaveLength(4);
  });
});

/*
 * The event spec: what a producer's payload means. This file is the one a DBA edits.
 *
 * Each field says where it sits in the payload (`path`), what SQL type it becomes, whether it
 * is required, and where it lands:
 *   - `role`: one of the core columns every fact has (event_id, event_type, account_id,
 *     user_id, occurred_at, properties);
 *   - `target: 'fact'`: an extra column of spectrum.fact_events named after the field;
 *   - `target: 'accounts' | 'users' | 'geography'`: an attribute of that dimension.
 *
 * After an edit, `npm run build` regenerates sql/ and migrations/current.sql; adding fields
 * is safe on a database full of data (columns are added, never rewritten). Removing,
 * renaming or retyping a deployed field is refused with instructions.
 */
import type { EventSpec } from './types.ts';

export const eventSpec: EventSpec = {
  limits: {
    // Largest payload (uncompressed jsonb size, bytes) that is interpreted; larger ones fail.
    maxPayloadBytes: 1_048_576,
    // Longest text accepted for any text field (event_type, user_id, dimension attributes).
    // Keep it at or below ~220: dim_geography's unique key over all three places has a
    // 2,704-byte cap (200 four-byte characters in each is tested).
    maxTextLength: 200,
  },
  // occurred_at must lie within [received_at - before, received_at + after].
  window: { before: '5 years', after: '1 day' },
  // One line per field, so that a field reads (and diffs) as one row.
  // prettier-ignore
  fields: [
    { name: 'event_id', path: ['event_id'], type: 'uuid', role: 'event_id', default: 'raw_id' },
    { name: 'event_type', path: ['event_type'], type: 'text', role: 'event_type', required: true },
    { name: 'account_id', path: ['account_id'], type: 'uuid', role: 'account_id', required: true },
    { name: 'user_id', path: ['user_id'], type: 'text', role: 'user_id', acceptNumbers: true },
    { name: 'occurred_at', path: ['timestamp'], type: 'timestamptz', role: 'occurred_at', default: 'received_at' },
    { name: 'country', path: ['geo', 'country'], type: 'text', target: 'geography', trim: true },
    { name: 'region', path: ['geo', 'region'], type: 'text', target: 'geography', trim: true },
    { name: 'city', path: ['geo', 'city'], type: 'text', target: 'geography', trim: true },
    { name: 'properties', path: ['properties'], type: 'object', role: 'properties', default: 'empty_object' },
  ],
};

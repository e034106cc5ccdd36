/* The shape of an event spec (see event-spec.ts). */

export const FIELD_TYPES = [
  'text',
  'uuid',
  'timestamptz',
  'integer',
  'bigint',
  'numeric',
  'boolean',
  'object',
] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

export const ROLES = [
  'event_id',
  'event_type',
  'account_id',
  'user_id',
  'occurred_at',
  'properties',
] as const;
export type Role = (typeof ROLES)[number];

export const TARGETS = ['fact', 'accounts', 'users', 'geography'] as const;
export type Target = (typeof TARGETS)[number];

export interface FieldSpec {
  /** Column name (lowercase snake_case, at most 63 bytes). */
  name: string;
  /** Keys from the payload's top level down to the value. */
  path: string[];
  type: FieldType;
  /** A core fact column this field fills. */
  role?: Role;
  /** Where a non-core field lands. */
  target?: Target;
  /** Absent or JSON null fails the event. */
  required?: boolean;
  /** Value when absent: the raw row's id, its received_at, or an empty object. */
  default?: 'raw_id' | 'received_at' | 'empty_object';
  /** A text field that also accepts a JSON number (kept as its decimal text). */
  acceptNumbers?: boolean;
  /** Trim surrounding whitespace; an empty string then counts as absent. */
  trim?: boolean;
}

export interface EventSpec {
  limits: { maxPayloadBytes: number; maxTextLength: number };
  window: { before: string; after: string };
  fields: FieldSpec[];
}

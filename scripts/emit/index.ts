/*
 * Every generated sql/ file, by name: model in, text out. Generated files, and only they, are
 * named *.generated.sql: build deletes one that no emitter produces any more.
 */
import type { Model } from '../spec/model.ts';
import { emitExtractEvent } from './extract.ts';
import { emitProcessClaimed } from './process.ts';
import {
  emitDimAccounts,
  emitDimGeography,
  emitDimUsers,
  emitExtractedType,
  emitFactEvents,
} from './tables.ts';

export function emitAll(m: Model): Map<string, string> {
  return new Map([
    ['100_dim_accounts.generated.sql', emitDimAccounts(m)],
    ['101_dim_users.generated.sql', emitDimUsers(m)],
    ['102_dim_geography.generated.sql', emitDimGeography(m)],
    ['103_fact_events.generated.sql', emitFactEvents(m)],
    ['130_extracted_event.generated.sql', emitExtractedType(m)],
    ['131_extract_event.generated.sql', emitExtractEvent(m)],
    ['140_process_claimed.generated.sql', emitProcessClaimed(m)],
  ]);
}

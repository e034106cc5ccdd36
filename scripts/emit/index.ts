/* Every generated sql/ file, by name: model in, text out. */
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
    ['100_dim_accounts.sql', emitDimAccounts(m)],
    ['101_dim_users.sql', emitDimUsers(m)],
    ['102_dim_geography.sql', emitDimGeography(m)],
    ['103_fact_events.sql', emitFactEvents(m)],
    ['130_extracted_event.sql', emitExtractedType(m)],
    ['131_extract_event.sql', emitExtractEvent(m)],
    ['140_process_claimed.sql', emitProcessClaimed(m)],
  ]);
}

/*
 * The house rules a formatter cannot keep: every TypeScript line fits a laptop screen.
 * Prettier keeps code within 100 columns (npm run format:check); strings, SQL in template
 * literals and comments it leaves alone, so this caps them. 120 leaves room for the spec's
 * one-field-per-line table, which Prettier is told to keep as it is.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../scripts/lib/paths.ts';

const MAX = 120;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.(ts|mjs)$/.test(e.name) ? [p] : [];
  });
}

describe('the TypeScript of scripts/ and test/', () => {
  it(`has no line over ${MAX} characters`, () => {
    const files = ['scripts', 'test'].flatMap((d) => sources(join(projectRoot, d)));
    expect(files.length).toBeGreaterThan(40);
    const long = files.flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .map((line, i) => ({ where: `${relative(projectRoot, f)}:${i + 1}`, length: line.length }))
        .filter((l) => l.length > MAX),
    );
    expect(long).toEqual([]);
  });
});

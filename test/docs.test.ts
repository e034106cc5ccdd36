/*
 * The documentation's relative links lead somewhere: every `[text](path)` and
 * `[text](path#anchor)` in README.md, docs/*.md and bench-results/README.md names a file that
 * exists and, with an anchor, a heading of that file (GitHub's slugs). Every docs/ page is
 * linked from README.md, so none is orphaned. Reads files only: no database.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../scripts/lib/paths.ts';

const docsDir = join(projectRoot, 'docs');
const docPages = readdirSync(docsDir)
  .filter((f) => f.endsWith('.md'))
  .sort()
  .map((f) => join(docsDir, f));
const documents = [
  join(projectRoot, 'README.md'),
  ...docPages,
  join(projectRoot, 'bench-results', 'README.md'),
];
const rel = (file: string) => relative(projectRoot, file);

/** The text outside fenced code blocks, with inline code spans kept as plain words. */
function prose(markdown: string): string {
  const kept: string[] = [];
  let fence: string | null = null;
  for (const line of markdown.split('\n')) {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1]?.charAt(0) ?? null;
    if (fence === null && marker !== null) fence = marker;
    else if (fence !== null && marker === fence) fence = null;
    else if (fence === null) kept.push(line.replace(/`+([^`]*)`+/g, '$1'));
  }
  return kept.join('\n');
}

/** GitHub's anchor for a heading: lowercase, punctuation other than - and _ gone, spaces to -. */
function slug(heading: string): string {
  return heading
    .trim()
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors of a markdown file's headings; a repeated heading gets -1, -2, … as on GitHub. */
function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(readFileSync(file, 'utf8')).split('\n')) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

interface Link {
  text: string;
  path: string;
  anchor: string | null;
  /** The file it points at, absolute. */
  target: string;
}

/** The relative links of a markdown file (URLs with a scheme are left out). */
function links(file: string): Link[] {
  const out: Link[] = [];
  for (const m of prose(readFileSync(file, 'utf8')).matchAll(
    /\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g,
  )) {
    const [, text = '', href = ''] = m;
    if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue;
    const hash = href.indexOf('#');
    const path = hash < 0 ? href : href.slice(0, hash);
    const anchor = hash < 0 ? null : decodeURIComponent(href.slice(hash + 1));
    const target = path === '' ? file : resolve(dirname(file), decodeURIComponent(path));
    out.push({ text, path: href, anchor, target });
  }
  return out;
}

describe('slug', () => {
  it('follows GitHub: lowercase, punctuation but - and _ dropped, spaces to -', () => {
    expect(slug('Its runs: `spectrum.pipeline_runs`')).toBe('its-runs-spectrumpipeline_runs');
    expect(slug('`spectrum.recount_status()`')).toBe('spectrumrecount_status');
    expect(slug('Walkthrough: the amount of a purchase, the plan of an account')).toBe(
      'walkthrough-the-amount-of-a-purchase-the-plan-of-an-account',
    );
    expect(slug('What build refuses, and the hand-written path')).toBe(
      'what-build-refuses-and-the-hand-written-path',
    );
  });
});

describe('documentation links', () => {
  it('finds the documents', () => {
    expect(docPages.length).toBeGreaterThan(0);
    for (const f of documents) expect(existsSync(f), rel(f)).toBe(true);
  });

  it.each(documents.map((f) => [rel(f), f]))('%s: every relative link resolves', (_, file) => {
    const broken: string[] = [];
    for (const link of links(file)) {
      const where = `[${link.text}](${link.path})`;
      if (!existsSync(link.target)) {
        broken.push(`${where}: ${rel(link.target)} does not exist`);
      } else if (link.anchor !== null) {
        if (!link.target.endsWith('.md'))
          broken.push(`${where}: an anchor into a non-markdown file`);
        else if (!anchors(link.target).has(link.anchor))
          broken.push(`${where}: no heading of ${rel(link.target)} has the anchor #${link.anchor}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('links every docs/ page from README.md', () => {
    const linked = new Set(links(join(projectRoot, 'README.md')).map((l) => l.target));
    const orphans = docPages.filter((page) => !linked.has(page)).map(rel);
    expect(orphans).toEqual([]);
  });
});

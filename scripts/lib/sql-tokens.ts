/*
 * A small SQL tokenizer for the static checks (scripts/lib/citus-rules.ts): words, quoted
 * identifiers, strings (with E'' escapes), dollar-quoted bodies, comments (nested block comments
 * too) and operators, each with its line; plus helpers to walk parentheses. No SQL grammar.
 */
export type Kind = 'word' | 'ident' | 'string' | 'dollar' | 'number' | 'param' | 'op' | 'comment';
export interface Token {
  kind: Kind;
  /** Lowercased word, identifier, unescaped string or dollar-quoted body, operator text. */
  value: string;
  pos: number;
  end: number;
  line: number;
  /** For string and dollar tokens: where the content starts in the source, and its line. */
  inner?: { pos: number; line: number };
}

export function tokenize(src: string, firstLine = 1): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = firstLine;
  const lines = (a: number, b: number) => {
    let n = 0;
    for (let k = a; k < b; k++) if (src.charCodeAt(k) === 10) n++;
    return n;
  };
  const push = (kind: Kind, value: string, start: number, end: number, inner?: Token['inner']) => {
    out.push({ kind, value, pos: start, end, line, inner });
    line += lines(start, end);
    i = end;
  };
  while (i < src.length) {
    const c = src[i]!;
    const rest = src.slice(i);
    let m: RegExpMatchArray | null;
    if (/\s/.test(c)) {
      if (c === '\n') line++;
      i++;
    } else if (rest.startsWith('--')) {
      const e = src.indexOf('\n', i);
      const end = e < 0 ? src.length : e;
      push('comment', src.slice(i, end), i, end);
    } else if (rest.startsWith('/*')) {
      let depth = 0;
      let k = i;
      do {
        if (src.startsWith('/*', k)) (depth++, (k += 2));
        else if (src.startsWith('*/', k)) (depth--, (k += 2));
        else k++;
      } while (depth > 0 && k < src.length);
      push('comment', src.slice(i, k), i, k);
    } else if (c === "'" || (/[eE]/.test(c) && src[i + 1] === "'")) {
      const backslash = c !== "'";
      let k = backslash ? i + 2 : i + 1;
      let value = '';
      while (k < src.length) {
        if (backslash && src[k] === '\\') ((value += src[k + 1] ?? ''), (k += 2));
        else if (src[k] === "'" && src[k + 1] === "'") ((value += "'"), (k += 2));
        else if (src[k] === "'") break;
        else value += src[k++];
      }
      const start = backslash ? i + 2 : i + 1;
      push('string', value, i, k + 1, { pos: start, line: line + lines(i, start) });
    } else if (c === '"') {
      let k = i + 1;
      while (k < src.length && !(src[k] === '"' && src[k + 1] !== '"')) k += src[k] === '"' ? 2 : 1;
      push('ident', src.slice(i + 1, k).replace(/""/g, '"'), i, k + 1);
    } else if ((m = rest.match(/^\$([A-Za-z_][A-Za-z0-9_]*)?\$/))) {
      const tag = m[0];
      const e = src.indexOf(tag, i + tag.length);
      const end = e < 0 ? src.length : e + tag.length;
      const inner = { pos: i + tag.length, line };
      push('dollar', src.slice(i + tag.length, e < 0 ? src.length : e), i, end, inner);
    } else if ((m = rest.match(/^\$\d+/))) {
      push('param', m[0], i, i + m[0].length);
    } else if ((m = rest.match(/^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/))) {
      push('word', m[0].toLowerCase(), i, i + m[0].length);
    } else if ((m = rest.match(/^\d+(\.\d+)?([eE][-+]?\d+)?/))) {
      push('number', m[0], i, i + m[0].length);
    } else {
      m = rest.match(/^(::|:=|=>|<=|>=|<>|!=|\|\||\.\.)/);
      const op = m ? m[0] : c;
      push('op', op, i, i + op.length);
    }
  }
  return out;
}

export const isWord = (t: Token | undefined, ...w: string[]) =>
  t !== undefined && t.kind === 'word' && (w.length === 0 || w.includes(t.value));
export const isOp = (t: Token | undefined, op: string) =>
  t !== undefined && t.kind === 'op' && t.value === op;

/** A possibly qualified name at toks[i]: [schema, name, index after]. */
export function qname(toks: Token[], i: number): [string | null, string, number] | null {
  const a = toks[i];
  if (!a || (a.kind !== 'word' && a.kind !== 'ident')) return null;
  if (isOp(toks[i + 1], '.') && (toks[i + 2]?.kind === 'word' || toks[i + 2]?.kind === 'ident'))
    return [a.value, toks[i + 2]!.value, i + 3];
  return [null, a.value, i + 1];
}

/** Index of the parenthesis closing the one at `open`. */
export function closing(toks: Token[], open: number): number {
  let depth = 0;
  for (let k = open; k < toks.length; k++) {
    if (isOp(toks[k], '(')) depth++;
    else if (isOp(toks[k], ')') && --depth === 0) return k;
  }
  return toks.length;
}

/** The innermost parenthesised group around toks[i] (its inside), or the whole statement. */
export function scopeOf(toks: Token[], i: number): [number, number] {
  let depth = 0;
  for (let k = i - 1; k >= 0; k--) {
    if (isOp(toks[k], ')')) depth++;
    else if (isOp(toks[k], '(') && depth-- === 0) return [k + 1, closing(toks, k)];
  }
  return [0, toks.length];
}

/** Indices in [from, to) at parenthesis depth 0 relative to `from`. */
export function* level(toks: Token[], from: number, to: number): Generator<number> {
  for (let k = from; k < to; k++) {
    yield k;
    if (isOp(toks[k], '(')) k = closing(toks, k);
  }
}

export function findAt(toks: Token[], from: number, to: number, ...words: string[]): number {
  for (const k of level(toks, from, to)) if (isWord(toks[k], ...words)) return k;
  return -1;
}

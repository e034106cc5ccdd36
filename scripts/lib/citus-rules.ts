/*
 * The Citus rules, checked on SQL text without a database (test/citus-rules.test.ts runs them on
 * sql/*.sql). Pure functions: files in, findings out. The SQL is read with a tokenizer (quotes,
 * dollar quotes, comments, parentheses), statement by statement, including the PL/pgSQL bodies of
 * functions and DO blocks and the literal part of `execute '…'`; no SQL parser. docs/citus.md
 * gives the Citus error behind each rule. Citus refuses volatile functions in modifications of
 * reference tables as well, so rule (3) covers every table of the schema, and DELETE's WHERE.
 * A single-server statement is one `if` branch of a body: mark it with the comment
 * `-- citus: single server only` right before the statement, inside `if <raw_buckets is empty>`.
 */
import {
  closing,
  findAt,
  isOp,
  isWord,
  level,
  qname,
  scopeOf,
  tokenize,
  type Token,
} from './sql-tokens.ts';

export { tokenize, type Token };

/** Hash-distributed tables of schema spectrum and their distribution column (scripts/lib/citus.ts). */
export const DISTRIBUTION: Readonly<Record<string, string>> = {
  dim_accounts: 'account_id',
  dim_users: 'account_id',
  fact_events: 'account_id',
  event_registry: 'account_id',
  raw_events: 'bucket',
};
/** The tables distributed by account_id, co-located, in the order distribute() creates them. */
export const BY_ACCOUNT: readonly string[] = Object.keys(DISTRIBUTION).filter(
  (t) => DISTRIBUTION[t] === 'account_id',
);
/** Unique keys that distribute() redefines before distributing: constraint name → columns. */
export const CITUS_KEYS: Readonly<Record<string, readonly string[]>> = {
  event_registry_pkey: ['account_id', 'event_id'],
  raw_events_pkey: ['bucket', 'id'],
};
/** Tables whose triggers distribute() drops. */
export const TRIGGERS_DROPPED: readonly string[] = ['raw_events'];

/** Where a table of schema spectrum lives on Citus: its distribution column, or 'reference'. */
export function placement(table: string): string {
  return DISTRIBUTION[table] ?? 'reference';
}

/** Each table the SQL creates in schema spectrum, and its placement on Citus. */
export function placements(files: { name: string; text: string }[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of files) {
    const t = tokenize(f.text).filter((x) => x.kind !== 'comment');
    t.forEach((x, i) => {
      let k = isWord(t[i + 1], 'unlogged') ? i + 2 : i + 1;
      if (!isWord(x, 'create') || !isWord(t[k], 'table')) return;
      k += isWord(t[k + 1], 'if') ? 4 : 1;
      const n = qname(t, k);
      if (n?.[0] === 'spectrum' && !isWord(t[n[2]], 'partition')) out[n[1]] = placement(n[1]);
    });
  }
  return out;
}

export type Rule =
  | 'unique-key' // (1) a unique key or ON CONFLICT target without the distribution column
  | 'for-update' // (2) FOR UPDATE/SHARE on a distributed table without an equality on its column
  | 'marker' // (2) a single-server marker outside the empty-raw_buckets branch, or marking nothing
  | 'volatile' // (3) a volatile function in an UPDATE/DELETE/ON CONFLICT, a mutable one in CASE
  | 'trigger-write'; // (4) a trigger on a distributed table whose function writes a reference table

export interface Finding {
  file: string;
  line: number;
  rule: Rule;
  table: string;
  message: string;
  statement: string;
}

/** Marks a locking statement as the single-server branch (inside `if <no raw_buckets> then`). */
export const SINGLE_SERVER_MARKER = /^--\s*citus:\s*single server only\b/i;

// ---------------------------------------------------------------------------------------------
// Statements

/** One statement: tokens without comments, with the source they index into. */
interface Stmt {
  file: string;
  src: string;
  toks: Token[];
  /** The statement carries a single-server marker comment. */
  marked: boolean;
}

interface FunctionDef {
  name: string;
  volatility: 'immutable' | 'stable' | 'volatile';
  body: Stmt[];
}

function excerpt(s: Stmt, from: number, to: number): string {
  const a = s.toks[from];
  const b = s.toks[Math.min(to, s.toks.length) - 1];
  if (!a || !b) return '';
  const text = s.src.slice(a.pos, b.end).replace(/\s+/g, ' ').trim();
  return text.length > 200 ? text.slice(0, 197) + '...' : text;
}

/**
 * Splits tokens into statements at top-level semicolons. For a PL/pgSQL body it also follows
 * IF/ELSE blocks, to check that each single-server marker sits on the branch taken when
 * spectrum.raw_buckets is empty (a variable selected from raw_buckets is null, or
 * `not exists (… raw_buckets …)`).
 */
function statements(file: string, src: string, toks: Token[], plpgsql: boolean, found: Finding[]) {
  const out: Stmt[] = [];
  type Frame = { kind: string; cond: Token[]; collecting: boolean; branch: 'then' | 'else' };
  const frames: Frame[] = [];
  const bucketVars = new Set<string>();
  let cur: Token[] = [];
  let marked = false;
  let prev: Token | undefined;
  let depth = 0;
  const finish = () => {
    if (cur.length) {
      const s: Stmt = { file, src, toks: cur, marked };
      out.push(s);
      const into = cur.findIndex((t) => isWord(t, 'into'));
      if (into >= 0 && cur.some((t) => isWord(t, 'raw_buckets')) && cur[into + 1])
        bucketVars.add(cur[into + 1]!.value);
    } else if (marked) found.push(markerFinding(file, src, prev, 'marks no statement'));
    cur = [];
    marked = false;
  };
  const guarded = () =>
    frames.some((f) => {
      if (f.kind !== 'if' || f.collecting) return false;
      const words = f.cond.filter((t) => t.kind === 'word').map((t) => t.value);
      const text = ` ${words.join(' ')} `;
      let emptyWhenTrue: boolean | null = null;
      if (words.includes('raw_buckets')) emptyWhenTrue = text.includes(' not exists ');
      else if (words.some((w) => bucketVars.has(w)))
        emptyWhenTrue = text.includes(' is null ')
          ? true
          : text.includes(' is not null ')
            ? false
            : null;
      return emptyWhenTrue !== null && emptyWhenTrue === (f.branch === 'then');
    });
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i]!;
    if (t.kind === 'comment') {
      if (SINGLE_SERVER_MARKER.test(t.value)) {
        marked = true;
        const why = 'is not inside the branch taken when spectrum.raw_buckets is empty';
        if (!plpgsql || !guarded()) found.push(markerFinding(file, src, t, why));
      }
      continue;
    }
    if (isOp(t, '(')) depth++;
    if (isOp(t, ')')) depth--;
    if (isOp(t, ';') && depth <= 0) {
      if (
        marked &&
        !cur.some((x, k) => isWord(x, 'for') && isWord(cur[k + 1], 'update', 'share', 'no', 'key'))
      )
        found.push(markerFinding(file, src, t, 'marks a statement without FOR UPDATE/SHARE'));
      finish();
      prev = t;
      continue;
    }
    cur.push(t);
    if (plpgsql && t.kind === 'word') {
      const top = frames[frames.length - 1];
      if (top?.collecting && t.value !== 'then') top.cond.push(t);
      const atStart =
        !prev ||
        isOp(prev, ';') ||
        isOp(prev, '>>') ||
        isWord(prev, 'then', 'else', 'loop', 'begin');
      if (t.value === 'end') {
        const next = toks[i + 1];
        const kind = isWord(next, 'if', 'loop', 'case') ? next!.value : null;
        if (kind) {
          cur.push(next!);
          i++;
        }
        const at = kind ? frames.map((f) => f.kind).lastIndexOf(kind) : frames.length - 1;
        if (at >= 0) frames.length = at;
      } else if (t.value === 'if' && atStart) {
        frames.push({ kind: 'if', cond: [], collecting: true, branch: 'then' });
      } else if (t.value === 'case')
        frames.push({ kind: 'case', cond: [], collecting: false, branch: 'then' });
      else if (t.value === 'loop')
        frames.push({ kind: 'loop', cond: [], collecting: false, branch: 'then' });
      else if (t.value === 'begin')
        frames.push({ kind: 'block', cond: [], collecting: false, branch: 'then' });
      else if (t.value === 'then' && top?.collecting) top.collecting = false;
      else if ((t.value === 'elsif' || t.value === 'elseif') && top?.kind === 'if')
        Object.assign(top, { cond: [], collecting: true, branch: 'then' });
      else if (t.value === 'else' && top?.kind === 'if') top.branch = 'else';
    } else if (
      plpgsql &&
      t.kind === 'op' &&
      t.value === '(' &&
      frames[frames.length - 1]?.collecting
    ) {
      frames[frames.length - 1]!.cond.push(t);
    }
    prev = t;
  }
  finish();
  return out;
}

function markerFinding(file: string, src: string, at: Token | undefined, why: string): Finding {
  return {
    file,
    line: at?.line ?? 1,
    rule: 'marker',
    table: 'raw_events',
    message: `the single-server marker ${why}`,
    statement: at ? src.slice(at.pos, at.end) : '',
  };
}

// ---------------------------------------------------------------------------------------------
// The whole check

const VOLATILE = new Set([
  'clock_timestamp',
  'timeofday',
  'random',
  'random_normal',
  'setseed',
  'nextval',
  'setval',
  'currval',
  'lastval',
  'gen_random_uuid',
  'uuid_generate_v1',
  'uuid_generate_v4',
  'pg_sleep',
  'txid_current',
  'pg_current_xact_id',
  'set_config',
  'dblink',
]);
const STABLE = new Set([
  'now',
  'statement_timestamp',
  'transaction_timestamp',
  'current_setting',
  'format',
  'concat',
  'concat_ws',
  'to_char',
  'to_timestamp',
  'to_date',
  'age',
  'date_trunc',
]);
const STABLE_KEYWORDS = new Set([
  'current_timestamp',
  'current_date',
  'current_time',
  'localtimestamp',
  'localtime',
]);
const NOT_ALIAS = new Set([
  'on',
  'using',
  'where',
  'join',
  'left',
  'right',
  'inner',
  'full',
  'cross',
  'natural',
  'order',
  'group',
  'limit',
  'for',
  'window',
  'having',
  'union',
  'set',
  'returning',
  'tablesample',
  'lateral',
  'offset',
  'into',
  'values',
  'select',
  'default',
  'overriding',
  'except',
  'intersect',
]);

/** Checks every statement of the given files (name → SQL text) against the Citus rules. */
export function checkCitusRules(files: { name: string; text: string }[]): Finding[] {
  const found: Finding[] = [];
  const stmts: Stmt[] = [];
  const functions = new Map<string, FunctionDef>();
  const tables = new Set<string>(Object.keys(DISTRIBUTION));
  const constraints = new Map<string, { table: string; cols: string[] }>();

  // Statements, function bodies and DO blocks, recursively, and the literal part of EXECUTE.
  const read = (file: string, src: string, firstLine: number, plpgsql: boolean): Stmt[] => {
    const list = statements(file, src, tokenize(src, firstLine), plpgsql, found);
    const all: Stmt[] = [];
    for (const s of list) {
      all.push(s);
      const t = s.toks;
      if (isWord(t[0], 'do')) {
        const b = t.find((x) => x.kind === 'dollar' || x.kind === 'string');
        if (b) all.push(...read(file, b.value, b.inner!.line, true));
      } else if (isWord(t[0], 'create')) {
        let k = isWord(t[1], 'or') ? 3 : 1;
        if (!isWord(t[k], 'function', 'procedure')) continue;
        const name = qname(t, k + 1);
        if (!name) continue;
        const open = name[2];
        const after = closing(t, open) + 1;
        const as = findAt(t, after, t.length, 'as');
        const b = as >= 0 ? t[as + 1] : undefined;
        const plpg = findAt(t, after, t.length, 'language');
        const lang = plpg >= 0 ? t[plpg + 1]?.value : 'sql';
        const vol = findAt(t, after, t.length, 'immutable', 'stable', 'volatile');
        const body =
          b && (b.kind === 'dollar' || b.kind === 'string')
            ? read(file, b.value, b.inner!.line, lang === 'plpgsql')
            : [];
        all.push(...body);
        functions.set(name[1], {
          name: name[1],
          volatility: vol >= 0 ? (t[vol]!.value as FunctionDef['volatility']) : 'volatile',
          body,
        });
      } else {
        t.forEach((x, k) => {
          if (isWord(x, 'execute') && t[k + 1]?.kind === 'string') {
            const lit = t[k + 1]!;
            all.push(...read(file, lit.value, lit.inner!.line, false));
          }
        });
      }
    }
    return all;
  };
  for (const f of files) stmts.push(...read(f.name, f.text, 1, false));

  // Tables and unique keys.
  const keyCheck = (s: Stmt, at: number, table: string, name: string, cols: string[]) => {
    constraints.set(name, { table, cols });
    const column = DISTRIBUTION[table];
    const citus = CITUS_KEYS[name] ?? cols;
    if (column && !citus.includes(column))
      found.push({
        file: s.file,
        line: s.toks[at]!.line,
        rule: 'unique-key',
        table,
        message: `unique key ${name} (${citus.join(', ')}) lacks the distribution column ${column}`,
        statement: excerpt(
          s,
          at,
          closing(
            s.toks,
            s.toks.findIndex((x, k) => k > at && isOp(x, '(')),
          ) + 1,
        ),
      });
  };
  const colsIn = (t: Token[], open: number) => {
    const cols: string[] = [];
    let first = true;
    for (const k of level(t, open + 1, closing(t, open))) {
      if (first && (t[k]!.kind === 'word' || t[k]!.kind === 'ident')) cols.push(t[k]!.value);
      first = isOp(t[k], ',');
    }
    return cols;
  };
  const tableName = (n: [string | null, string, number] | null) =>
    n && (n[0] === 'spectrum' || (n[0] === null && tables.has(n[1]))) ? n[1] : null;
  for (const s of stmts) {
    const t = s.toks;
    for (let i = 0; i < t.length; i++) {
      if (isWord(t[i], 'create') && (isWord(t[i + 1], 'table') || isWord(t[i + 2], 'table'))) {
        let k = findAt(t, i, t.length, 'table') + 1;
        if (isWord(t[k], 'if')) k += isWord(t[k + 1], 'not') ? 3 : 2;
        const n = qname(t, k);
        if (!n || !isOp(t[n[2]], '(')) continue;
        if (n[0] === 'spectrum') tables.add(n[1]);
        const table = n[1];
        const close = closing(t, n[2]);
        let start = n[2] + 1;
        for (const k2 of [...level(t, n[2] + 1, close), close]) {
          if (k2 !== close && !isOp(t[k2], ',')) continue;
          const item = start;
          start = k2 + 1;
          let name: string | null = null;
          let j = item;
          if (isWord(t[j], 'constraint')) ((name = t[j + 1]!.value), (j += 2));
          const kw = findAt(t, j, k2, 'primary', 'unique');
          if (kw < 0) continue;
          const pk = isWord(t[kw], 'primary');
          const open = t.findIndex((x, m) => m > kw && m < k2 && isOp(x, '('));
          const inline = kw !== j;
          const cols = inline ? [t[item]!.value] : open >= 0 ? colsIn(t, open) : [];
          name ??= pk ? `${table}_pkey` : `${table}_${cols.join('_')}_key`;
          keyCheck(s, inline ? kw : j, table, name, cols);
        }
        i = close;
      } else if (isWord(t[i], 'alter') && isWord(t[i + 1], 'table')) {
        let k = i + 2;
        while (isWord(t[k], 'if', 'exists', 'only')) k++;
        const n = qname(t, k);
        const table = tableName(n);
        const add = n ? n[2] : -1;
        if (!table || !isWord(t[add], 'add')) continue;
        let j = add + 1;
        let name: string | null = null;
        if (isWord(t[j], 'constraint')) ((name = t[j + 1]!.value), (j += 2));
        if (!isWord(t[j], 'primary', 'unique')) continue;
        const open = t.findIndex((x, m) => m > j && isOp(x, '('));
        const cols = colsIn(t, open);
        name ??= isWord(t[j], 'primary') ? `${table}_pkey` : `${table}_${cols.join('_')}_key`;
        keyCheck(s, j, table, name, cols);
      } else if (
        isWord(t[i], 'create') &&
        isWord(t[i + 1], 'unique') &&
        isWord(t[i + 2], 'index')
      ) {
        const on = t.findIndex((x, m) => m > i && isWord(x, 'on'));
        let k = on + 1;
        if (isWord(t[k], 'only')) k++;
        const n = qname(t, k);
        const table = tableName(n);
        if (!table) continue;
        const open = t.findIndex((x, m) => m >= n![2] && isOp(x, '('));
        const named = t[on - 1] && !isWord(t[on - 1], 'index', 'concurrently', 'exists');
        keyCheck(s, i, table, named ? t[on - 1]!.value : `${table}_unique_idx`, colsIn(t, open));
      }
    }
  }

  const callVolatility = (t: Token[], k: number): FunctionDef['volatility'] | null => {
    if (t[k]?.kind !== 'word' || !isOp(t[k + 1], '(')) {
      return t[k]?.kind === 'word' && STABLE_KEYWORDS.has(t[k]!.value) ? 'stable' : null;
    }
    const schema = isOp(t[k - 1], '.') ? t[k - 2]?.value : null;
    const name = t[k]!.value;
    const own = functions.get(name);
    if (
      own &&
      (schema === 'spectrum' || (schema === null && !VOLATILE.has(name) && !STABLE.has(name)))
    )
      return own.volatility;
    if (schema && schema !== 'pg_catalog') return null;
    return VOLATILE.has(name) ? 'volatile' : STABLE.has(name) ? 'stable' : null;
  };
  /** (3): volatile calls in [from, to); with `set`, mutable calls inside CASE or COALESCE too. */
  const volatileIn = (
    s: Stmt,
    from: number,
    to: number,
    table: string,
    what: string,
    isSet: boolean,
    whole: [number, number],
  ) => {
    const t = s.toks;
    let caseDepth = 0;
    const coalesceEnds: number[] = [];
    for (let k = from; k < to; k++) {
      if (isWord(t[k], 'case')) caseDepth++;
      else if (isWord(t[k], 'end') && caseDepth > 0) caseDepth--;
      else if (isWord(t[k], 'coalesce') && isOp(t[k + 1], '('))
        coalesceEnds.push(closing(t, k + 1));
      while (coalesceEnds.length && coalesceEnds[coalesceEnds.length - 1]! < k) coalesceEnds.pop();
      const v = callVolatility(t, k);
      const inCase = isSet && (caseDepth > 0 || coalesceEnds.length > 0);
      if (v === 'volatile' || (v === 'stable' && inCase))
        found.push({
          file: s.file,
          line: t[k]!.line,
          rule: 'volatile',
          table,
          message:
            v === 'volatile'
              ? `volatile ${t[k]!.value}() in the ${what} of a modification of spectrum.${table}`
              : `non-immutable ${t[k]!.value} inside CASE/COALESCE in the ${what} of an UPDATE of spectrum.${table}`,
          statement: excerpt(s, whole[0], whole[1]),
        });
    }
  };
  for (const s of stmts) {
    const t = s.toks;
    for (let i = 0; i < t.length; i++) {
      // (2) FOR UPDATE / FOR SHARE over a distributed table.
      if (isWord(t[i], 'for') && isWord(t[i + 1], 'update', 'share', 'no', 'key') && !s.marked) {
        const [a, b] = scopeOf(t, i);
        const from = findAt(t, a, i, 'from');
        if (from < 0) continue;
        const whereAt = findAt(t, from, i, 'where');
        const fromEnd =
          [...level(t, from + 1, i)].find((k) =>
            isWord(t[k], 'where', 'group', 'order', 'limit', 'having', 'window'),
          ) ?? i;
        const refs: { table: string; alias: string }[] = [];
        for (const k of level(t, from, fromEnd)) {
          if (!(isWord(t[k], 'from', 'join') || isOp(t[k], ','))) continue;
          let j = k + 1;
          if (isWord(t[j], 'only')) j++;
          const n = qname(t, j);
          const table = tableName(n);
          if (!table || !n) continue;
          let al = n[2];
          if (isWord(t[al], 'as')) al++;
          const alias =
            t[al]?.kind === 'word' && !NOT_ALIAS.has(t[al]!.value) ? t[al]!.value : table;
          refs.push({ table, alias });
        }
        const whereEnd =
          whereAt < 0
            ? -1
            : ([...level(t, whereAt + 1, b)].find((k) =>
                isWord(t[k], 'group', 'order', 'limit', 'for', 'having', 'window'),
              ) ?? b);
        for (const r of refs) {
          const column = DISTRIBUTION[r.table];
          if (!column) continue;
          let eq = false;
          for (let k = whereAt + 1; whereAt >= 0 && k < whereEnd; k++) {
            if (isOp(t[k], '(') && isWord(t[k + 1], 'select')) k = closing(t, k);
            const own =
              isWord(t[k], column) && (!isOp(t[k - 1], '.') || isWord(t[k - 2], r.alias, r.table));
            if (
              own &&
              (isOp(t[k + 1], '=') ||
                isOp(t[k - 1], '=') ||
                (isOp(t[k - 1], '.') && isOp(t[k - 3], '=')))
            )
              eq = true;
          }
          if (!eq)
            found.push({
              file: s.file,
              line: t[i]!.line,
              rule: 'for-update',
              table: r.table,
              message: `FOR ${t[i + 1]!.value.toUpperCase()} on spectrum.${r.table} without an equality on ${column} (Citus: could not run distributed query with FOR UPDATE/SHARE commands)`,
              statement: excerpt(s, a, b),
            });
        }
      }
      // (3) UPDATE … SET … WHERE and DELETE … WHERE on a table of the schema.
      if (
        isWord(t[i], 'update') &&
        !isWord(t[i - 1], 'do', 'for', 'key', 'no', 'on', 'after', 'before', 'or')
      ) {
        const n = qname(t, i + 1);
        const table = tableName(n);
        if (!table || !n) continue;
        let k = n[2];
        if (isWord(t[k], 'as')) k++;
        if (!isWord(t[k], 'set')) k++;
        if (!isWord(t[k], 'set')) continue;
        const [, b] = scopeOf(t, i);
        const setEnd =
          [...level(t, k + 1, b)].find((m) => isWord(t[m], 'from', 'where', 'returning')) ?? b;
        volatileIn(s, k + 1, setEnd, table, 'SET list', true, [i, b]);
        const w = findAt(t, setEnd, b, 'where');
        if (w >= 0)
          volatileIn(
            s,
            w + 1,
            findAt(t, w, b, 'returning') >= 0 ? findAt(t, w, b, 'returning') : b,
            table,
            'WHERE',
            false,
            [i, b],
          );
      }
      if (isWord(t[i], 'delete') && isWord(t[i + 1], 'from')) {
        const table = tableName(qname(t, i + 2));
        const [, b] = scopeOf(t, i);
        const w = findAt(t, i, b, 'where');
        if (table && w >= 0)
          volatileIn(
            s,
            w + 1,
            findAt(t, w, b, 'returning') >= 0 ? findAt(t, w, b, 'returning') : b,
            table,
            'WHERE',
            false,
            [i, b],
          );
      }
      // (1) and (3): INSERT … ON CONFLICT.
      if (isWord(t[i], 'insert') && isWord(t[i + 1], 'into')) {
        const n = qname(t, i + 2);
        const table = tableName(n);
        if (!table) continue;
        const [, b] = scopeOf(t, i);
        const on = [...level(t, i, b)].find(
          (m) => isWord(t[m], 'on') && isWord(t[m + 1], 'conflict'),
        );
        if (on === undefined) continue;
        const column = DISTRIBUTION[table];
        let target: string[] | null = null;
        let j = on + 2;
        if (isOp(t[j], '(')) ((target = colsIn(t, j)), (j = closing(t, j) + 1));
        else if (isWord(t[j], 'on') && isWord(t[j + 1], 'constraint')) {
          const c = t[j + 2]!.value;
          target = [...(CITUS_KEYS[c] ?? constraints.get(c)?.cols ?? [column ?? ''])];
          j += 3;
        }
        if (column && target && !target.includes(column))
          found.push({
            file: s.file,
            line: t[on]!.line,
            rule: 'unique-key',
            table,
            message: `ON CONFLICT (${target.join(', ')}) on spectrum.${table} lacks the distribution column ${column}`,
            statement: excerpt(s, i, Math.min(b, j + 1)),
          });
        const set = findAt(t, j, b, 'set');
        if (isWord(t[set - 1], 'update')) {
          const end = findAt(t, set, b, 'where', 'returning');
          volatileIn(s, set + 1, end >= 0 ? end : b, table, 'ON CONFLICT … SET list', true, [i, b]);
          if (end >= 0 && isWord(t[end], 'where')) {
            const r = findAt(t, end, b, 'returning');
            volatileIn(s, end + 1, r >= 0 ? r : b, table, 'ON CONFLICT … WHERE', false, [i, b]);
          }
        }
      }
    }
  }

  // (4) Triggers on distributed tables whose functions write reference tables.
  const writes = (fn: string, seen: Set<string>): { table: string; s: Stmt; k: number }[] => {
    const f = functions.get(fn);
    if (!f || seen.has(fn)) return [];
    seen.add(fn);
    const out: { table: string; s: Stmt; k: number }[] = [];
    for (const s of f.body) {
      const t = s.toks;
      t.forEach((x, k) => {
        let n: ReturnType<typeof qname> = null;
        if (isWord(x, 'insert', 'merge') && isWord(t[k + 1], 'into')) n = qname(t, k + 2);
        else if (isWord(x, 'delete') && isWord(t[k + 1], 'from')) n = qname(t, k + 2);
        else if (isWord(x, 'truncate')) n = qname(t, isWord(t[k + 1], 'table') ? k + 2 : k + 1);
        else if (
          isWord(x, 'update') &&
          !isWord(t[k - 1], 'do', 'for', 'key', 'no', 'on', 'after', 'before', 'or')
        ) {
          n = qname(t, k + 1);
          const after = n ? n[2] : 0;
          if (
            !isWord(t[after], 'set') &&
            !isWord(t[after + 1], 'set') &&
            !isWord(t[after + 2], 'set')
          )
            n = null;
        } else if (
          x.kind === 'word' &&
          isOp(t[k + 1], '(') &&
          isOp(t[k - 1], '.') &&
          isWord(t[k - 2], 'spectrum')
        )
          out.push(...writes(x.value, seen));
        const table = tableName(n);
        if (table && placement(table) === 'reference') out.push({ table, s, k });
      });
    }
    return out;
  };
  for (const s of stmts) {
    const t = s.toks;
    const trig = t.findIndex((x) => isWord(x, 'trigger'));
    if (!isWord(t[0], 'create') || trig < 0 || trig > 4) continue;
    const on = t.findIndex((x, k) => k > trig && isWord(x, 'on'));
    const table = tableName(qname(t, on + 1));
    const exec = t.findIndex((x, k) => k > on && isWord(x, 'execute'));
    const fn = qname(t, exec + 2);
    if (!table || exec < 0 || !fn || !DISTRIBUTION[table] || TRIGGERS_DROPPED.includes(table))
      continue;
    for (const w of writes(fn[1], new Set()))
      found.push({
        file: s.file,
        line: t[0]!.line,
        rule: 'trigger-write',
        table,
        message: `trigger ${t[trig + 1]?.value} on spectrum.${table} runs ${fn[1]}(), which writes the reference table spectrum.${w.table} (${w.s.file}:${w.s.toks[w.k]!.line})`,
        statement: excerpt(s, 0, t.length),
      });
  }
  return found.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
}

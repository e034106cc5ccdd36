/*
 * The Citus rules, checked on SQL text without a database (test/citus-rules.test.ts runs them on
 * sql/*.sql). Pure functions: files in, findings out. The SQL is read with a tokenizer (quotes,
 * dollar quotes, comments, parentheses), statement by statement, including the PL/pgSQL bodies of
 * functions and DO blocks and the literal part of `execute '…'`; no SQL parser. The test's table
 * of statements that Citus 13.2 refused or ran is the reference for what each rule flags. Citus
 * refuses volatile functions in modifications of reference tables as well, so rule (3) covers
 * every table of the schema.
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

type Volatility = 'immutable' | 'stable' | 'volatile';
interface FunctionDef {
  name: string;
  volatility: Volatility;
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

const words = (list: string) => new Set(list.split(' '));
const VOLATILE = words(
  'clock_timestamp timeofday random random_normal setseed nextval setval currval lastval ' +
    'gen_random_uuid uuid_generate_v1 uuid_generate_v4 pg_sleep txid_current pg_current_xact_id ' +
    'set_config dblink',
);
// Citus evaluates these once on the coordinator, but not inside CASE or COALESCE.
const STABLE = words(
  'now statement_timestamp transaction_timestamp current_setting format concat concat_ws to_char ' +
    'to_timestamp to_date age date_trunc',
);
const STABLE_KEYWORDS = words(
  'current_timestamp current_date current_time localtimestamp localtime',
);
const NOT_ALIAS = words(
  'on using where join left right inner full cross natural order group limit for window having ' +
    'union except intersect set returning tablesample lateral offset into values select default',
);
const TABLE_CONSTRAINT = ['constraint', 'primary', 'unique', 'check', 'foreign', 'exclude', 'like'];
/** Words before `update` that make it no UPDATE statement. */
const NOT_UPDATE = ['do', 'for', 'key', 'no', 'on', 'after', 'before', 'or'];

type Files = { name: string; text: string }[];

/** Everything read from the files: statements (bodies included), functions, tables, keys. */
interface Sql {
  stmts: Stmt[];
  functions: Map<string, FunctionDef>;
  tables: Set<string>;
  constraints: Map<string, string[]>;
  /** The columns of each table, from CREATE TABLE and ALTER TABLE … ADD COLUMN. */
  columns: Map<string, Set<string>>;
  found: Finding[];
}

/** Statements, function bodies and DO blocks, recursively, and the literal part of EXECUTE. */
function read(sql: Sql, file: string, src: string, firstLine: number, plpgsql: boolean): Stmt[] {
  const all: Stmt[] = [];
  for (const s of statements(file, src, tokenize(src, firstLine), plpgsql, sql.found)) {
    all.push(s);
    const t = s.toks;
    if (isWord(t[0], 'do')) {
      const b = t.find((x) => x.kind === 'dollar' || x.kind === 'string');
      if (b) all.push(...read(sql, file, b.value, b.inner!.line, true));
      continue;
    }
    const k = isWord(t[1], 'or') ? 3 : 1;
    const name = isWord(t[0], 'create') && isWord(t[k], 'function', 'procedure') && qname(t, k + 1);
    if (name) {
      const after = closing(t, name[2]) + 1;
      const at = (...w: string[]) => t[findAt(t, after, t.length, ...w)];
      const b = t[findAt(t, after, t.length, 'as') + 1];
      const lang = t[findAt(t, after, t.length, 'language') + 1]?.value ?? 'sql';
      const body =
        b && (b.kind === 'dollar' || b.kind === 'string')
          ? read(sql, file, b.value, b.inner!.line, lang === 'plpgsql')
          : [];
      all.push(...body);
      const volatility = (at('immutable', 'stable', 'volatile')?.value ?? 'volatile') as Volatility;
      sql.functions.set(name[1], { name: name[1], volatility, body });
      continue;
    }
    t.forEach((x, i) => {
      const lit = t[i + 1];
      if (isWord(x, 'execute') && lit?.kind === 'string')
        all.push(...read(sql, file, lit.value, lit.inner!.line, false));
    });
  }
  return all;
}

/** A table of the schema: qualified by spectrum, or an unqualified name the schema has. */
function tableName(sql: Sql, n: ReturnType<typeof qname>): string | null {
  return n && (n[0] === 'spectrum' || (n[0] === null && sql.tables.has(n[1]))) ? n[1] : null;
}

/** The plain column names of a parenthesised list (expressions are skipped). */
function columns(t: Token[], open: number): string[] {
  const cols: string[] = [];
  let first = true;
  for (const k of level(t, open + 1, closing(t, open))) {
    if (first && (t[k]!.kind === 'word' || t[k]!.kind === 'ident')) cols.push(t[k]!.value);
    first = isOp(t[k], ',');
  }
  return cols;
}

/** (1) Primary keys, unique constraints and unique indexes, in their Citus form. */
function uniqueKeys(sql: Sql) {
  const key = (s: Stmt, at: number, table: string, name: string, cols: string[]) => {
    sql.constraints.set(name, cols);
    const column = DISTRIBUTION[table];
    const citus = CITUS_KEYS[name] ?? cols;
    const open = s.toks.findIndex((x, k) => k > at && isOp(x, '('));
    if (column && !citus.includes(column))
      sql.found.push({
        file: s.file,
        line: s.toks[at]!.line,
        rule: 'unique-key',
        table,
        message: `unique key ${name} (${citus.join(', ')}) lacks the distribution column ${column}`,
        statement: excerpt(s, at, closing(s.toks, open) + 1),
      });
  };
  const keyName = (table: string, primary: boolean, cols: string[]) =>
    primary ? `${table}_pkey` : `${table}_${cols.join('_')}_key`;
  for (const s of sql.stmts) {
    const t = s.toks;
    for (let i = 0; i < t.length; i++) {
      if (isWord(t[i], 'create') && (isWord(t[i + 1], 'table') || isWord(t[i + 2], 'table'))) {
        let k = findAt(t, i, t.length, 'table') + 1;
        if (isWord(t[k], 'if')) k += isWord(t[k + 1], 'not') ? 3 : 2;
        const n = qname(t, k);
        if (!n || !isOp(t[n[2]], '(')) continue;
        const table = n[1];
        const close = closing(t, n[2]);
        const own = sql.columns.get(table) ?? new Set<string>();
        sql.columns.set(table, own);
        let item = n[2] + 1;
        for (const end of [...level(t, n[2] + 1, close), close]) {
          if (end !== close && !isOp(t[end], ',')) continue;
          if (!isWord(t[item], ...TABLE_CONSTRAINT)) own.add(t[item]?.value ?? '');
          const named = isWord(t[item], 'constraint');
          const j = named ? item + 2 : item;
          const kw = findAt(t, j, end, 'primary', 'unique');
          if (kw >= 0) {
            const inline = kw !== j; // a column's own `primary key` or `unique`
            const open = t.findIndex((x, m) => m > kw && m < end && isOp(x, '('));
            const cols = inline ? [t[item]!.value] : open >= 0 ? columns(t, open) : [];
            const name = named
              ? t[item + 1]!.value
              : keyName(table, isWord(t[kw], 'primary'), cols);
            key(s, inline ? kw : j, table, name, cols);
          }
          item = end + 1;
        }
        i = close;
      } else if (isWord(t[i], 'alter') && isWord(t[i + 1], 'table')) {
        let k = i + 2;
        while (isWord(t[k], 'if', 'exists', 'only')) k++;
        const n = qname(t, k);
        const table = tableName(sql, n);
        if (!table || !n || !isWord(t[n[2]], 'add')) continue;
        if (isWord(t[n[2] + 1], 'column')) {
          const c = t[isWord(t[n[2] + 2], 'if') ? n[2] + 5 : n[2] + 2];
          if (c) sql.columns.get(table)?.add(c.value);
          continue;
        }
        const named = isWord(t[n[2] + 1], 'constraint');
        const j = named ? n[2] + 3 : n[2] + 1;
        if (!isWord(t[j], 'primary', 'unique')) continue;
        const cols = columns(
          t,
          t.findIndex((x, m) => m > j && isOp(x, '(')),
        );
        key(
          s,
          j,
          table,
          named ? t[j - 1]!.value : keyName(table, isWord(t[j], 'primary'), cols),
          cols,
        );
      } else if (
        isWord(t[i], 'create') &&
        isWord(t[i + 1], 'unique') &&
        isWord(t[i + 2], 'index')
      ) {
        const on = t.findIndex((x, m) => m > i && isWord(x, 'on'));
        const n = qname(t, isWord(t[on + 1], 'only') ? on + 2 : on + 1);
        const table = tableName(sql, n);
        if (!table || !n) continue;
        const cols = columns(
          t,
          t.findIndex((x, m) => m >= n[2] && isOp(x, '(')),
        );
        const named = !isWord(t[on - 1], 'index', 'concurrently', 'exists');
        key(s, i, table, named ? t[on - 1]!.value : `${table}_unique_idx`, cols);
      }
    }
  }
}

/** (2) A locking read over a distributed table has an equality on its column in its WHERE. */
function lockingRead(sql: Sql, s: Stmt, i: number) {
  const t = s.toks;
  const [a, b] = scopeOf(t, i);
  const from = findAt(t, a, i, 'from');
  if (from < 0 || s.marked) return;
  const clause = (start: number, end: number, ...w: string[]) =>
    [...level(t, start, end)].find((k) => isWord(t[k], ...w)) ?? end;
  const fromEnd = clause(from + 1, i, 'where', 'group', 'order', 'limit', 'having', 'window');
  const where = isWord(t[fromEnd], 'where') ? fromEnd : -1;
  const whereEnd =
    where < 0 ? -1 : clause(where + 1, b, 'group', 'order', 'limit', 'for', 'having', 'window');
  for (const k of level(t, from, fromEnd)) {
    if (!(isWord(t[k], 'from', 'join') || isOp(t[k], ','))) continue;
    const n = qname(t, isWord(t[k + 1], 'only') ? k + 2 : k + 1);
    const table = tableName(sql, n);
    const column = table && DISTRIBUTION[table];
    if (!n || !table || !column) continue;
    const al = isWord(t[n[2]], 'as') ? n[2] + 1 : n[2];
    const alias = t[al]?.kind === 'word' && !NOT_ALIAS.has(t[al]!.value) ? t[al]!.value : table;
    let equal = false;
    for (let m = where + 1; where >= 0 && m < whereEnd; m++) {
      if (isOp(t[m], '(') && isWord(t[m + 1], 'select')) m = closing(t, m); // not a subquery's
      const qualified = isOp(t[m - 1], '.');
      if (!isWord(t[m], column) || (qualified && !isWord(t[m - 2], alias, table))) continue;
      if (isOp(t[m + 1], '=') || isOp(t[qualified ? m - 3 : m - 1], '=')) equal = true;
    }
    if (!equal)
      sql.found.push({
        file: s.file,
        line: t[i]!.line,
        rule: 'for-update',
        table,
        message: `FOR ${t[i + 1]!.value.toUpperCase()} on spectrum.${table} without an equality on ${column}`,
        statement: excerpt(s, a, b),
      });
  }
}

/** The statement modified, and the part of it looked at. */
interface Target {
  table: string;
  /** Names its columns are qualified by (the table, its alias, `excluded`). */
  names: string[];
  kind: 'update' | 'delete' | 'conflict';
  clause: 'SET' | 'WHERE';
}

/**
 * (3) What Citus refuses, as measured on Citus 13.2: a volatile call anywhere; in ON CONFLICT … DO
 * UPDATE any non-immutable call; in an UPDATE a stable call inside CASE or COALESCE of the SET
 * list, or given a column of the row.
 */
function volatileIn(
  sql: Sql,
  s: Stmt,
  range: [number, number],
  to: Target,
  whole: [number, number],
) {
  const t = s.toks;
  const cols = sql.columns.get(to.table) ?? new Set<string>();
  const columnIn = (open: number) => {
    for (let k = open + 1; k < closing(t, open); k++) {
      const x = t[k]!;
      if (x.kind !== 'word' || isOp(t[k + 1], '(') || isOp(t[k + 1], '.')) continue;
      if (isOp(t[k - 1], '.') ? isWord(t[k - 2], ...to.names) : cols.has(x.value)) return true;
    }
    return false;
  };
  let cases = 0;
  const coalesceEnds: number[] = [];
  for (let k = range[0]; k < range[1]; k++) {
    if (isWord(t[k], 'case')) cases++;
    else if (isWord(t[k], 'end') && cases > 0) cases--;
    else if (isWord(t[k], 'coalesce') && isOp(t[k + 1], '(')) coalesceEnds.push(closing(t, k + 1));
    while (coalesceEnds.length && coalesceEnds[coalesceEnds.length - 1]! < k) coalesceEnds.pop();
    const v = volatility(sql, t, k);
    if (v === null || v === 'immutable') continue;
    const name = t[k]!.value;
    const where = `the ${to.kind === 'conflict' ? 'ON CONFLICT … ' : ''}${to.clause} of spectrum.${to.table}`;
    let why: string | null = null;
    if (v === 'volatile') why = `volatile ${name}() in ${where}`;
    else if (to.kind === 'conflict') why = `non-immutable ${name} in ${where}`;
    else if (to.kind === 'update' && to.clause === 'SET' && (cases > 0 || coalesceEnds.length))
      why = `non-immutable ${name} inside CASE/COALESCE in ${where}`;
    else if (to.kind === 'update' && isOp(t[k + 1], '(') && columnIn(k + 1))
      why = `stable ${name}() given a column in ${where}`;
    if (why)
      sql.found.push({
        file: s.file,
        line: t[k]!.line,
        rule: 'volatile',
        table: to.table,
        message: why,
        statement: excerpt(s, whole[0], whole[1]),
      });
  }
}

/** How volatile the call (or keyword) at t[k] is; null when it is no call or is immutable. */
function volatility(sql: Sql, t: Token[], k: number): Volatility | null {
  const x = t[k];
  if (x?.kind !== 'word') return null;
  if (!isOp(t[k + 1], '(')) return STABLE_KEYWORDS.has(x.value) ? 'stable' : null;
  const schema = isOp(t[k - 1], '.') ? t[k - 2]?.value : null;
  const builtin = VOLATILE.has(x.value) ? 'volatile' : STABLE.has(x.value) ? 'stable' : null;
  const own = sql.functions.get(x.value);
  if (own && (schema === 'spectrum' || (schema === null && !builtin))) return own.volatility;
  return schema && schema !== 'pg_catalog' ? null : builtin;
}

/** (3) UPDATE … SET … WHERE, DELETE … WHERE, and (1, 3) INSERT … ON CONFLICT. */
function modification(sql: Sql, s: Stmt, i: number) {
  const t = s.toks;
  const [, b] = scopeOf(t, i);
  const until = (from: number, ...w: string[]) => {
    const k = findAt(t, from, b, ...w);
    return k < 0 ? b : k;
  };
  if (isWord(t[i], 'update') && !isWord(t[i - 1], ...NOT_UPDATE)) {
    const n = qname(t, i + 1);
    const table = tableName(sql, n);
    const set = n ? [n[2], n[2] + 1, n[2] + 2].find((k) => isWord(t[k], 'set')) : undefined;
    if (!table || set === undefined) return;
    const names = [table, t[set - 1]!.value];
    const setEnd = until(set + 1, 'from', 'where', 'returning');
    const to: Target = { table, names, kind: 'update', clause: 'SET' };
    volatileIn(sql, s, [set + 1, setEnd], to, [i, b]);
    const where = findAt(t, setEnd, b, 'where');
    if (where >= 0)
      volatileIn(sql, s, [where + 1, until(where, 'returning')], { ...to, clause: 'WHERE' }, [
        i,
        b,
      ]);
  } else if (isWord(t[i], 'delete') && isWord(t[i + 1], 'from')) {
    const table = tableName(sql, qname(t, i + 2));
    const where = findAt(t, i, b, 'where');
    const to: Target = { table: table ?? '', names: [], kind: 'delete', clause: 'WHERE' };
    if (table && where >= 0) volatileIn(sql, s, [where + 1, until(where, 'returning')], to, [i, b]);
  } else if (isWord(t[i], 'insert') && isWord(t[i + 1], 'into')) {
    const n = qname(t, i + 2);
    const table = tableName(sql, n);
    const on = [...level(t, i, b)].find((m) => isWord(t[m], 'on') && isWord(t[m + 1], 'conflict'));
    if (!table || on === undefined) return;
    const column = DISTRIBUTION[table];
    let target: readonly string[] | undefined;
    let j = on + 2;
    if (isOp(t[j], '(')) {
      target = columns(t, j);
      j = closing(t, j) + 1;
    } else if (isWord(t[j], 'on') && isWord(t[j + 1], 'constraint')) {
      const c = t[j + 2]!.value;
      target = CITUS_KEYS[c] ?? sql.constraints.get(c);
      j += 3;
    }
    if (column && target && !target.includes(column))
      sql.found.push({
        file: s.file,
        line: t[on]!.line,
        rule: 'unique-key',
        table,
        message: `ON CONFLICT (${target.join(', ')}) on spectrum.${table} lacks the distribution column ${column}`,
        statement: excerpt(s, i, Math.min(b, j + 1)),
      });
    const set = findAt(t, j, b, 'set');
    if (!isWord(t[set - 1], 'update')) return;
    const end = until(set, 'where', 'returning');
    const alias = n && isWord(t[n[2]], 'as') ? t[n[2] + 1]!.value : table;
    const to: Target = {
      table,
      names: [table, alias, 'excluded'],
      kind: 'conflict',
      clause: 'SET',
    };
    volatileIn(sql, s, [set + 1, end], to, [i, b]);
    if (isWord(t[end], 'where'))
      volatileIn(sql, s, [end + 1, until(end, 'returning')], { ...to, clause: 'WHERE' }, [i, b]);
  }
}

/** The reference tables a function writes, itself or through the spectrum functions it calls. */
function referenceWrites(sql: Sql, fn: string, seen = new Set<string>()) {
  const f = sql.functions.get(fn);
  const out: { table: string; at: string }[] = [];
  if (!f || seen.has(fn)) return out;
  seen.add(fn);
  for (const s of f.body) {
    const t = s.toks;
    t.forEach((x, k) => {
      let n: ReturnType<typeof qname> = null;
      if (isWord(x, 'insert', 'merge') && isWord(t[k + 1], 'into')) n = qname(t, k + 2);
      else if (isWord(x, 'delete') && isWord(t[k + 1], 'from')) n = qname(t, k + 2);
      else if (isWord(x, 'truncate')) n = qname(t, isWord(t[k + 1], 'table') ? k + 2 : k + 1);
      else if (isWord(x, 'update') && !isWord(t[k - 1], ...NOT_UPDATE)) {
        n = qname(t, k + 1);
        if (n && ![0, 1, 2].some((d) => isWord(t[n![2] + d], 'set'))) n = null;
      } else if (
        x.kind === 'word' &&
        isOp(t[k + 1], '(') &&
        isOp(t[k - 1], '.') &&
        isWord(t[k - 2], 'spectrum')
      )
        out.push(...referenceWrites(sql, x.value, seen));
      const table = tableName(sql, n);
      if (table && placement(table) === 'reference') out.push({ table, at: `${s.file}:${x.line}` });
    });
  }
  return out;
}

/** (4) CREATE TRIGGER … ON <distributed table> … EXECUTE FUNCTION f: f writes no reference table. */
function triggers(sql: Sql) {
  for (const s of sql.stmts) {
    const t = s.toks;
    const trig = t.findIndex((x) => isWord(x, 'trigger'));
    if (!isWord(t[0], 'create') || trig < 0 || trig > 4) continue;
    const on = t.findIndex((x, k) => k > trig && isWord(x, 'on'));
    const table = tableName(sql, qname(t, on + 1));
    const exec = t.findIndex((x, k) => k > on && isWord(x, 'execute'));
    const fn = exec >= 0 ? qname(t, exec + 2) : null;
    if (!table || !fn || !DISTRIBUTION[table] || TRIGGERS_DROPPED.includes(table)) continue;
    for (const w of referenceWrites(sql, fn[1]))
      sql.found.push({
        file: s.file,
        line: t[0]!.line,
        rule: 'trigger-write',
        table,
        message:
          `trigger ${t[trig + 1]?.value} on spectrum.${table} runs ${fn[1]}(), ` +
          `which writes the reference table spectrum.${w.table} (${w.at})`,
        statement: excerpt(s, 0, t.length),
      });
  }
}

/** Checks every statement of the given files (name → SQL text) against the Citus rules. */
export function checkCitusRules(files: Files): Finding[] {
  const sql: Sql = {
    stmts: [],
    functions: new Map(),
    tables: new Set([...Object.keys(DISTRIBUTION), ...Object.keys(placements(files))]),
    constraints: new Map(),
    columns: new Map(),
    found: [],
  };
  for (const f of files) sql.stmts.push(...read(sql, f.name, f.text, 1, false));
  uniqueKeys(sql);
  for (const s of sql.stmts)
    s.toks.forEach((x, i) => {
      if (isWord(x, 'for') && isWord(s.toks[i + 1], 'update', 'share', 'no', 'key'))
        lockingRead(sql, s, i);
      else if (isWord(x, 'update', 'delete', 'insert')) modification(sql, s, i);
    });
  triggers(sql);
  return sql.found.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
}

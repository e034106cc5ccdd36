/*
 * The full disk. When the soak runs as root, raw_events (its heap, TOAST and indexes) lives from
 * the start in a tablespace on a tmpfs mount of its own; the fault shrinks the mount to what is
 * used plus a little room (mount -o remount,size=…), so the next inserts fail as on a full disk
 * (53100 "could not extend file …: No space left on device"), and the DBA's fix, growing it
 * again, is a remount too. Without root the stand-in is a trigger that refuses inserts into
 * raw_events with the same SQLSTATE and message shape. Every mount is unmounted at the end,
 * after the server stopped (unmountAll).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmdirSync, statfsSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Sql } from '../lib/db.ts';

const mounted = new Set<string>();
const MiB = 1024 * 1024;

/** The server's user (it owns the tablespace's directory). */
const id = (flag: string) =>
  spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim();

function run(cmd: string, args: string[]): { ok: boolean; message: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, message: (r.stderr || r.stdout || '').trim() };
}

/** Unmounts what this process mounted (after the server stopped). */
export function unmountAll(): void {
  for (const dir of mounted) {
    if (!run('umount', [dir]).ok) run('umount', ['-l', dir]);
    mounted.delete(dir);
    try {
      rmdirSync(dir);
    } catch {
      // Left for the system's temporary-file cleaner if a lazy unmount still holds it.
    }
  }
}

export interface SoakDisk {
  kind: 'tmpfs' | 'stand-in';
  /** In words, for the report. */
  describe: string;
  /** Makes the disk full but for `room` bytes; returns the bytes left. */
  fill(room: number): Promise<number>;
  /** The DBA's fix: a bigger disk (or the stand-in removed). */
  grow(): Promise<void>;
}

/**
 * Puts raw_events on a tmpfs of its own (run before the producers start: the table is empty and
 * the move instant), or prepares the stand-in when mounting is not possible here.
 */
export async function prepareDisk(sql: Sql, log: (line: string) => void): Promise<SoakDisk> {
  let reason = '';
  let dir: string | null = null;
  // A limit, not a reservation: tmpfs uses memory only for what is written.
  const bigMiB = Math.floor((totalmem() * 0.5) / MiB);
  if (process.getuid?.() !== 0) reason = 'not root: mounting a tmpfs needs root';
  else {
    dir = mkdtempSync(join(tmpdir(), 'spectrum-soak-disk-'));
    chmodSync(dir, 0o755);
    const m = run('mount', [
      '-t',
      'tmpfs',
      '-o',
      `size=${bigMiB}m,uid=${id('-u')},gid=${id('-g')},mode=700`,
      'tmpfs',
      dir,
    ]);
    if (m.ok) mounted.add(dir);
    else {
      reason = `mount -t tmpfs was refused (${m.message})`;
      rmdirSync(dir);
      dir = null;
    }
  }
  if (!dir) {
    log(`disk-full fault: stand-in trigger (${reason})`);
    return standIn(sql, reason);
  }
  const mount = dir;
  await sql.unsafe(`create tablespace soak_small location '${mount}'`);
  await sql.unsafe(`alter table spectrum.raw_events set tablespace soak_small`);
  const indexes = await sql<{ name: string }[]>`
    select indexrelid::regclass::text as name from pg_catalog.pg_index
     where indrelid = 'spectrum.raw_events'::regclass`;
  for (const { name } of indexes) await sql.unsafe(`alter index ${name} set tablespace soak_small`);
  log(`raw_events and its ${indexes.length} indexes on a tmpfs tablespace at ${mount}`);
  const used = () => {
    const s = statfsSync(mount);
    return (s.blocks - s.bfree) * s.bsize;
  };
  return {
    kind: 'tmpfs',
    describe: `raw_events' tmpfs tablespace`,
    fill: async (room) => {
      for (let attempt = 0; ; attempt++) {
        const size = Math.ceil((used() + room) / MiB);
        const r = run('mount', ['-o', `remount,size=${size}m`, mount]);
        if (r.ok) return size * MiB - used();
        if (attempt === 5) throw new Error(`could not shrink the tmpfs at ${mount}: ${r.message}`);
      }
    },
    grow: async () => {
      const r = run('mount', ['-o', `remount,size=${bigMiB}m`, mount]);
      if (!r.ok) throw new Error(`could not grow the tmpfs at ${mount}: ${r.message}`);
    },
  };
}

/* Refuses inserts as a full disk does: SQLSTATE 53100, "could not extend file". */
async function standIn(sql: Sql, reason: string): Promise<SoakDisk> {
  return {
    kind: 'stand-in',
    describe: `stand-in (${reason}): a trigger refusing inserts into raw_events with 53100`,
    fill: async () => {
      await sql.unsafe(`
        create or replace function soak.disk_full() returns trigger
        language plpgsql as $$
        begin
          raise exception 'could not extend file "%": No space left on device',
            pg_catalog.pg_relation_filepath('spectrum.raw_events')
            using errcode = '53100', hint = 'Check free disk space.';
        end
        $$`);
      await sql.unsafe(`create trigger soak_disk_full before insert on spectrum.raw_events
                          for each statement execute function soak.disk_full()`);
      return 0;
    },
    grow: async () => {
      await sql.unsafe(`drop trigger soak_disk_full on spectrum.raw_events`);
    },
  };
}

/*
 * The full disk. When the soak runs as root, raw_events (its heap, TOAST and indexes) lives from
 * the start in a tablespace on a file system of its own: ext4 in a sparse file on a loop device
 * (real disk writes), else a tmpfs. The fault fills it but for a little room (a ballast file
 * on the ext4, a remount to a smaller size for the tmpfs), so the next inserts fail as on a full
 * disk (53100 "could not extend file …: No space left on device"); the DBA's fix frees the room
 * again (the ballast removed, the tmpfs remounted bigger). Without root the stand-in is a
 * trigger that refuses inserts into raw_events with the same SQLSTATE and message shape. Every
 * mount is unmounted, and the loop file removed, at the end after the server stopped
 * (unmountAll).
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmdirSync,
  rmSync,
  statfsSync,
} from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Sql } from '../lib/db.ts';

/** Mount point → its loop file (or null for a tmpfs). */
const mounted = new Map<string, string | null>();
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
  for (const [dir, file] of mounted) {
    if (!run('umount', [dir]).ok) run('umount', ['-l', dir]);
    mounted.delete(dir);
    if (file) rmSync(file, { force: true });
    try {
      rmdirSync(dir);
    } catch {
      // Left for the system's temporary-file cleaner if a lazy unmount still holds it.
    }
  }
}

export interface SoakDisk {
  kind: 'ext4' | 'tmpfs' | 'stand-in';
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
  if (process.getuid?.() !== 0) {
    const reason = 'not root: mounting a file system needs root';
    log(`disk-full fault: stand-in trigger (${reason})`);
    return standIn(sql, reason);
  }
  const dir = mkdtempSync(join(tmpdir(), 'spectrum-soak-disk-'));
  chmodSync(dir, 0o755);
  const uid = Number(id('-u'));
  const gid = Number(id('-g'));
  // ext4 in a sparse file as big as half the free space of the temporary directory's disk.
  const free = statfsSync(tmpdir());
  const loopGiB = Math.max(1, Math.floor((free.bavail * free.bsize) / 2 / 2 ** 30));
  const file = `${dir}.img`;
  const fd = openSync(file, 'w');
  ftruncateSync(fd, loopGiB * 2 ** 30);
  closeSync(fd);
  const mkfs = run('mkfs.ext4', ['-q', '-F', '-m', '0', file]);
  const loop = mkfs.ok ? run('mount', ['-o', 'loop', file, dir]) : mkfs;
  let kind: 'ext4' | 'tmpfs';
  let why = '';
  // A limit, not a reservation: tmpfs uses memory only for what is written.
  const bigMiB = Math.floor((totalmem() * 0.5) / MiB);
  if (loop.ok) {
    mounted.set(dir, file);
    kind = 'ext4';
  } else {
    rmSync(file, { force: true });
    why = `a loop mount was refused (${loop.message}); `;
    const m = run('mount', ['-t', 'tmpfs', '-o', `size=${bigMiB}m`, 'tmpfs', dir]);
    if (!m.ok) {
      rmdirSync(dir);
      const reason = `${why}mount -t tmpfs was refused too (${m.message})`;
      log(`disk-full fault: stand-in trigger (${reason})`);
      return standIn(sql, reason);
    }
    mounted.set(dir, null);
    kind = 'tmpfs';
  }
  const location = join(dir, 'tablespace');
  mkdirSync(location, { mode: 0o700 });
  chownSync(location, uid, gid);
  await sql.unsafe(`create tablespace soak_small location '${location}'`);
  await sql.unsafe(`alter table spectrum.raw_events set tablespace soak_small`);
  const indexes = await sql<{ name: string }[]>`
    select indexrelid::regclass::text as name from pg_catalog.pg_index
     where indrelid = 'spectrum.raw_events'::regclass`;
  for (const { name } of indexes) await sql.unsafe(`alter index ${name} set tablespace soak_small`);
  const ballast = join(dir, 'ballast');
  const stat = () => statfsSync(dir);
  const used = () => (stat().blocks - stat().bfree) * stat().bsize;
  if (kind === 'ext4') {
    log(
      `${why}raw_events and its ${indexes.length} indexes in a tablespace on ext4 in a ` +
        `${loopGiB} GiB sparse file on a loop device, at ${dir}`,
    );
    return {
      kind,
      describe: `raw_events' tablespace (ext4 on a loop device) filled by a ballast file`,
      fill: async (room) => {
        // fallocate of all that is free fails on the extents' own blocks: fill in rounds.
        for (let i = 0; i < 30; i++) {
          const extra = stat().bavail * stat().bsize - room;
          if (extra < 64 * 1024) break;
          const size = i === 0 ? Math.floor(extra * 0.98) : extra;
          let r = run('fallocate', ['-l', String(size), `${ballast}-${i}`]);
          if (!r.ok)
            r = run('fallocate', ['-l', String(Math.floor(size / 2)), `${ballast}-${i}-half`]);
          if (!r.ok && i === 0) throw new Error(`could not fill ${dir} (fallocate): ${r.message}`);
        }
        return stat().bavail * stat().bsize;
      },
      grow: async () => {
        for (const f of readdirSync(dir))
          if (f.startsWith('ballast')) rmSync(join(dir, f), { force: true });
      },
    };
  }
  log(`${why}raw_events and its ${indexes.length} indexes in a tablespace on a tmpfs at ${dir}`);
  return {
    kind,
    describe: `raw_events' tmpfs tablespace`,
    fill: async (room) => {
      for (let attempt = 0; ; attempt++) {
        const size = Math.ceil((used() + room) / MiB);
        const r = run('mount', ['-o', `remount,size=${size}m`, dir]);
        if (r.ok) return size * MiB - used();
        if (attempt === 5) throw new Error(`could not shrink the tmpfs at ${dir}: ${r.message}`);
      }
    },
    grow: async () => {
      const r = run('mount', ['-o', `remount,size=${bigMiB}m`, dir]);
      if (!r.ok) throw new Error(`could not grow the tmpfs at ${dir}: ${r.message}`);
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

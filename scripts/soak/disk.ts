/*
 * The full disk: raw_events' tablespace on a small tmpfs mount that fills. Mounting needs root;
 * where it is refused the stand-in is a trigger that refuses inserts into raw_events with the
 * same SQLSTATE (53100 disk_full) and the same message shape as a heap that cannot grow. Every
 * mount is unmounted, on failure and on exit too (unmountAll).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Sql } from '../lib/db.ts';

const mounted = new Set<string>();

/** The server's user (it owns the tablespace's directory). */
const id = (flag: string) =>
  spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim();

function run(cmd: string, args: string[]): { ok: boolean; message: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, message: (r.stderr || r.stdout || '').trim() };
}

/** Unmounts what this process mounted (the server must be stopped, or off the mount). */
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

export interface FullDisk {
  /** How the disk was made small: 'tmpfs' or the trigger stand-in. */
  kind: 'tmpfs' | 'stand-in';
  /** Bytes of room left for raw_events when the fault began. */
  room: number;
  /** Seconds the table took to move there (ACCESS EXCLUSIVE: producers waited). */
  moveSeconds: number;
  /** The DBA's fix: grow the disk (or drop the stand-in). */
  grow(): Promise<void>;
  /** Back to pg_default, tablespace dropped, mount removed; seconds the move back took. */
  release(): Promise<number>;
}

const MiB = 1024 * 1024;

/**
 * Puts raw_events on a tmpfs with `room` bytes to spare, or installs the stand-in when a mount
 * is not possible here (not root, or mounts refused); `why` receives the reason.
 */
export async function fillableDisk(
  sql: Sql,
  room: number,
  why: (reason: string) => void,
): Promise<FullDisk> {
  const [{ bytes }] = (await sql`
    select (pg_catalog.pg_relation_size('spectrum.raw_events', 'main')
            + pg_catalog.pg_relation_size('spectrum.raw_events', 'fsm')
            + pg_catalog.pg_relation_size('spectrum.raw_events', 'vm'))::float8 as bytes`) as unknown as [
    { bytes: number },
  ];
  const sizeMiB = Math.ceil((bytes + room) / MiB);
  let dir: string | null = null;
  let reason = '';
  if (process.getuid?.() !== 0) reason = 'not root: mounting a tmpfs needs root';
  else {
    dir = mkdtempSync(join(tmpdir(), 'spectrum-soak-disk-'));
    chmodSync(dir, 0o755);
    const m = run('mount', [
      '-t',
      'tmpfs',
      '-o',
      `size=${sizeMiB}m,uid=${id('-u')},gid=${id('-g')},mode=700`,
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
    why(reason);
    return standIn(sql);
  }
  const mount = dir;
  try {
    await sql.unsafe(`create tablespace soak_small location '${mount}'`);
    const t = performance.now();
    await sql`alter table spectrum.raw_events set tablespace soak_small`;
    const moveSeconds = (performance.now() - t) / 1000;
    return {
      kind: 'tmpfs',
      room: sizeMiB * MiB - bytes,
      moveSeconds,
      grow: async () => {
        const r = run('mount', ['-o', `remount,size=${sizeMiB * 4 + 1024}m`, mount]);
        if (!r.ok) throw new Error(`could not grow the tmpfs at ${mount}: ${r.message}`);
      },
      release: async () => {
        const t = performance.now();
        await sql`alter table spectrum.raw_events set tablespace pg_default`;
        const seconds = (performance.now() - t) / 1000;
        await sql`drop tablespace soak_small`;
        if (!run('umount', [mount]).ok) run('umount', ['-l', mount]);
        mounted.delete(mount);
        rmdirSync(mount);
        return seconds;
      },
    };
  } catch (e) {
    await sql`alter table spectrum.raw_events set tablespace pg_default`.catch(() => {});
    await sql`drop tablespace if exists soak_small`.catch(() => {});
    unmountAll();
    throw e;
  }
}

/* Refuses inserts as a full disk does: SQLSTATE 53100, "could not extend file". */
async function standIn(sql: Sql): Promise<FullDisk> {
  await sql.unsafe(`
    create or replace function soak.disk_full() returns trigger
    language plpgsql as $$
    begin
      raise exception 'could not extend file "%": No space left on device',
        pg_catalog.pg_relation_filepath('spectrum.raw_events')
        using errcode = '53100', hint = 'Check free disk space.';
    end
    $$;
    create trigger soak_disk_full before insert on spectrum.raw_events
      for each statement execute function soak.disk_full();`);
  return {
    kind: 'stand-in',
    room: 0,
    moveSeconds: 0,
    grow: async () => {
      await sql.unsafe(`drop trigger soak_disk_full on spectrum.raw_events`);
    },
    release: async () => 0,
  };
}

// Locks that one process at a time holds: an exclusive flock on a lock file (the addon's
// tryLockFile), which the system releases when its process ends however it ends (a crash,
// SIGKILL), so that none is left held by a run that is gone. The file holds the holder's process
// id, for the message of a run that finds it held.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { loadAddon } from './native';

/**
 * Another run holds a lock (`TrecRunWriter.open`'s on a run file, `encodeCollection`'s on an
 * embedding cache folder): `message` says what it locks and which process holds it.
 */
export class LockHeld extends Error {
  constructor(what: string, holder: string,
    /** The lock file (absolute): `<run file>.lock` (beside the file a link names), or `lock` in the cache folder. */
    readonly file: string) {
    super(`${what} is in use by another run (${holder}): wait for it to end`);
    this.name = 'LockHeld';
  }
}

// File systems without flock (some NFS, FUSE and parallel file systems): the work goes on unlocked,
// with a warning, as huggingface_hub falls back to a soft lock there.
const NO_FLOCK = new Set([os.constants.errno.ENOLCK, os.constants.errno.ENOSYS, os.constants.errno.EOPNOTSUPP]);

/**
 * Takes the exclusive flock on `fd`, the open `lockFile`: false while another holds it. Where the
 * file system has no flock, true with a warning that `unlocked` (what goes on without the lock).
 */
export function tryLockDescriptor(fd: number, lockFile: string, unlocked: string): boolean {
  try {
    return loadAddon().tryLockFile(fd);
  } catch (err) {
    if (!NO_FLOCK.has((err as { errno?: number }).errno ?? -1)) throw err;
    process.emitWarning(`${lockFile}: this file system has no flock (${(err as Error).message}); ${unlocked}`);
    return true;
  }
}

// The lock files this process holds, with their descriptors.
const held = new Map<string, number>();

/**
 * Takes the lock `file` for `what` (LockHeld names both when another process holds it) and returns
 * its release, which removes the file (once).
 */
export function takeLock(file: string, what: string): () => void {
  file = path.resolve(file);
  for (;;) {
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    let locked = false;
    try {
      if (!tryLockDescriptor(fd, file, `${what} is used without it`)) {
        const holder = fs.readFileSync(fd, 'utf8').trim();
        throw new LockHeld(what, /^\d+$/.test(holder) ? `process ${holder}` : 'a process starting', file);
      }
      // Locked after its holder removed it (releases): this file is no longer the lock; a later run may have made another.
      if (fs.fstatSync(fd).ino !== fs.statSync(file, { throwIfNoEntry: false })?.ino) continue;
      fs.ftruncateSync(fd);
      fs.writeSync(fd, `${process.pid}\n`, 0);
      held.set(file, fd);
      locked = true;
    } finally {
      if (!locked) fs.closeSync(fd);
    }
    return () => {
      if (held.get(file) !== fd) return;
      held.delete(file);
      fs.rmSync(file, { force: true });  // before the unlock: a run that locks it then sees it gone
      fs.closeSync(fd);
    };
  }
}

/** Releases the locks this process holds, synchronously: for a Ctrl-C handler that then ends the process. */
export function releaseHeldLocks(): void {
  for (const [file, fd] of held) {
    fs.rmSync(file, { force: true });
    fs.closeSync(fd);
  }
  held.clear();
}

/** Whether this process holds the lock `file`. */
export function holdsLock(file: string): boolean {
  return held.has(path.resolve(file));
}

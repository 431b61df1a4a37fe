// Files written whole or not at all, by processes that may run at once on one volume (replicas
// sharing a cache, where every container's process may be PID 1): each writer writes under a
// temporary name of its own and renames the file into place when whole.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

// A file name holds at most 255 bytes (NAME_MAX): a name near that long leaves no room for the
// temporary suffix (saving an index under a 240-byte name failed with ENAMETOOLONG), so its
// temporary names start with only as much of it as leaves room (a process id has at most 10 digits).
const NAME_MAX_BYTES = 255;
const STEM_MAX_BYTES = NAME_MAX_BYTES - '.tmp-4294967295-01234567'.length;

/** What the temporary names of a file named `name` start with: `name`, cut at a character to fit. */
function temporaryStem(name: string): string {
  let bytes = 0;
  let end = 0;
  for (const c of name) {
    bytes += Buffer.byteLength(c);
    if (bytes > STEM_MAX_BYTES) return name.slice(0, end);
    end += c.length;
  }
  return name;
}

/**
 * A temporary name next to `file`, `<file>.tmp-<pid>-<8 hex>` (a name too long for that suffix
 * cut short first). The process id alone is not unique: containers sharing a volume all run as
 * PID 1, and two writers of one name truncate and rename each other's file.
 */
export function temporaryPath(file: string): string {
  const name = path.basename(file);
  const stem = temporaryStem(name);
  const start = stem === name ? file : path.join(path.dirname(file), stem);
  const tmp = `${start}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  trackedTemporaries?.add(tmp);
  return tmp;
}

// The temporary names this process made, once trackTemporaries() was called (by the command
// line: a library in a server would collect names for ever), for removeTrackedTemporaries().
let trackedTemporaries: Set<string> | null = null;

export function trackTemporaries(): void {
  trackedTemporaries ??= new Set();
}

/**
 * Removes the tracked temporary files (or folders: an eval's of a pipe) still there, synchronously:
 * for a Ctrl-C handler that then ends the process (a model conversion's are as large as the model).
 * A name is never made twice, so one renamed or removed since is simply gone.
 */
export function removeTrackedTemporaries(): void {
  for (const tmp of trackedTemporaries ?? []) fs.rmSync(tmp, { force: true, recursive: true });
  trackedTemporaries?.clear();
}

/**
 * The file that `file` names through any chain of symbolic links, even one not there yet: where
 * a write to `file` lands (what the shell's `>` writes), and what a file created there is.
 */
export async function followLinks(file: string): Promise<string> {
  const exists = (f: string, stat: (f: string) => Promise<unknown>) => stat(f).then(() => true, () => false);
  let target = path.resolve(file);
  for (let links = 0; ; links++) {
    const stat = await fs.promises.lstat(target).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (stat === null || !stat.isSymbolicLink()) return target;
    if (links === 40) throw new Error(`${file}: a chain of more than 40 symbolic links (ELOOP)`);
    // Relative to the link's real folder (a '..' in the link climbs out of that one, as the kernel does).
    const next = path.resolve(await fs.promises.realpath(path.dirname(target)), await fs.promises.readlink(target));
    // A /proc/<pid>/fd link (/dev/stdout, /dev/fd/63 of `>(gzip)`) to a pipe or a socket reads
    // 'pipe:[123]', no path: a link that leads somewhere when opened, to nothing by its text, is opened itself.
    if (!(await exists(next, fs.promises.lstat)) && (await exists(target, fs.promises.stat))) return target;
    target = next;
  }
}

/** Makes `file` with `write(tmp)` under a temporary name, then renames it into place. */
export function replaceAtomically(file: string, write: (tmp: string) => void): void {
  const tmp = temporaryPath(file);
  try {
    write(tmp);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * fs.mkdirSync(dir, { recursive: true }) without its endless loop: where mkdir in a folder that
 * exists fails with ENOENT (procfs, sysfs), Node makes the parent again and retries for ever, at
 * full CPU and deaf to Ctrl-C (`make-random-model --out /proc/x`); and a read-only file system's
 * EROFS came out as ENOENT. The missing folders are made one at a time, outermost first. Returns
 * the first folder made (an absolute path), or undefined when `dir` was there.
 */
export function makeFolders(dir: string): string | undefined {
  const missing: string[] = [];
  for (let d = path.resolve(dir); !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;  // else made meanwhile by another process
    }
  }
  return missing[0];
}

/**
 * After a failure, removes the folders makeFolders(dir) made (`made`, its return value, the
 * outermost), innermost first, only while they are empty: another process writing the same files
 * may have finished there meanwhile.
 */
export function removeFoldersMade(dir: string, made: string | undefined): void {
  for (let d = path.resolve(dir); made !== undefined; d = path.dirname(d)) {
    try {
      fs.rmdirSync(d);
    } catch {
      return;
    }
    if (d === made) return;
  }
}

/** Writes `file` whole or not at all: a reader, or a full disk, never leaves it half written. */
export function writeFileAtomic(file: string, content: string): void {
  makeFolders(path.dirname(file));
  replaceAtomically(file, (tmp) => fs.writeFileSync(tmp, content));
}

/** As writeFileAtomic, off the event loop (files of many megabytes). */
export async function writeFileAtomicAsync(file: string, content: string | Uint8Array): Promise<void> {
  const tmp = temporaryPath(file);
  try {
    await fs.promises.writeFile(tmp, content);
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
}

// A writer that died (killed, out of memory) leaves its temporary file for good, possibly as large
// as what it wrote: a crash-looping replica fills the disk. A live writer writes its file
// continuously and renames it at once, so one untouched for an hour is abandoned. (Whether the
// writer's process lives cannot tell: another container's PID 1 looks alive.)
const ABANDONED_MS = 60 * 60 * 1000;

/**
 * Removes the temporary files untouched for an hour in `dir`: temporaryPath's names of the files
 * `names` (and their `<file>.tmp-<pid>` of earlier versions), or of any file when `names` is
 * omitted (a folder of camembed's own); nothing else.
 */
export async function removeAbandonedTemporaries(dir: string, names?: readonly string[]): Promise<void> {
  const stems = names?.map(temporaryStem);
  try {
    // In pieces: a user's folder (an index saved there) may hold many thousands of files, and
    // listing 100,000 names at once stalled the event loop for 31 ms (62 ms with readdirSync).
    for await (const { name } of await fs.promises.opendir(dir, { bufferSize: 256 })) {
      const match = /^(.+)\.tmp-\d+(-[0-9a-f]{8})?$/.exec(name);
      if (match === null || (stems === undefined ? match[2] === undefined : !stems.includes(match[1]))) continue;
      try {
        const file = path.join(dir, name);
        if (Date.now() - (await fs.promises.stat(file)).mtimeMs > ABANDONED_MS) await fs.promises.rm(file, { force: true });
      } catch {
        // removed by another process meanwhile, or not ours to remove: left as it is
      }
    }
  } catch {
    // a folder missing or unreadable: what writes there says so itself
  }
}

// I/O errors that say which file or stream they are about.

/**
 * A failed open, read or write (`err`) as an Error that names the file or stream: Node's messages
 * for a descriptor's reads and writes name none ('EIO: i/o error, read'). Keeps the errno code. A
 * read or write error that names its path already (an open's: "ENOENT: ..., open '/x'") is returned
 * as it is; an open's says 'cannot open /x: ENOENT: ...'.
 */
export function ioError(action: 'open' | 'read' | 'write to' | 'save', what: string, err: unknown): Error {
  const { message, code, path, syscall } = err as NodeJS.ErrnoException;
  if (path !== undefined && action !== 'open') return err as Error;
  const reason = message.replace(`, ${syscall} '${path}'`, '');  // the path, said once
  return Object.assign(new Error(`cannot ${action} ${what}: ${reason}`, { cause: err }), { code });
}

// I/O errors that say which file or stream they are about.

/**
 * A failed read or write (`err`) as an Error that names the file or stream: Node's messages for a
 * descriptor's reads and writes name none ('EIO: i/o error, read'). Keeps the errno code. An error
 * that names its path already (an open's: "ENOENT: ..., open '/x'") is returned as it is.
 */
export function ioError(action: 'read' | 'write to' | 'save', what: string, err: unknown): Error {
  const { message, code, path } = err as NodeJS.ErrnoException;
  if (path !== undefined) return err as Error;
  return Object.assign(new Error(`cannot ${action} ${what}: ${message}`, { cause: err }), { code });
}

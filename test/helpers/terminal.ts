/**
 * Runs `run` with process.stderr taken for a terminal (so progress bars are drawn), its writes
 * collected in `written` (which `run` may empty between steps) instead of printed.
 */
export async function withTerminalStderr<T>(run: (written: string[]) => Promise<T>): Promise<T> {
  const tty = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
  Object.defineProperty(process.stderr, 'isTTY', { value: true, configurable: true });
  const written: string[] = [];
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => { written.push(String(chunk)); return true; });
  try {
    return await run(written);
  } finally {
    stderr.mockRestore();
    if (tty === undefined) delete (process.stderr as { isTTY?: boolean }).isTTY;
    else Object.defineProperty(process.stderr, 'isTTY', tty);
  }
}

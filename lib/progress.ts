// A one-line progress bar on stderr: drawn only when stderr is a TTY (silent in pipes,
// logs and CI), at most ~10 redraws a second.

export interface ProgressBar {
  update(done: number, total?: number): void;
  finish(): void;
}

export interface ProgressOptions {
  label: string;
  total?: number;           // unknown when absent
  /** Work done before this run (a resumed job): it counts in the bar, not in the rate and ETA. */
  initial?: number;
  unit: 'bytes' | 'items';
  stream?: NodeJS.WriteStream;
}

/**
 * A count or a rate, rounded: 7, 2.5, 159, 1.6k, 1.50M; bytes in B, KiB, MiB... The unit goes by
 * the value as rounded: 999,960 is 1.00M, not 1000.0k, and 1,048,570 bytes 1.0 MiB, not 1024.0 KiB.
 */
function formatAmount(n: number, unit: 'bytes' | 'items'): string {
  if (unit === 'items') {
    if (n >= 999_950) return `${(n / 1e6).toFixed(2)}M`;
    if (n >= 999.5) return `${(n / 1e3).toFixed(1)}k`;
    return n < 9.95 && !Number.isInteger(n) ? n.toFixed(1) : n.toFixed(0);
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Number(n.toFixed(i === 0 ? 0 : 1)) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '--:--';
  const m = Math.floor(s / 60), sec = Math.floor(s % 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : `${m}:${String(sec).padStart(2, '0')}`;
}

// A rate measured over less than a second says little (a save's first draw follows its 64-byte
// header: 31 KiB/s, an ETA of 28 hours for 3 GiB): the rate and the ETA are shown from a second on,
// and at the end (the whole run's rate).
const MIN_RATE_MS = 1000;

// The stream of a bar drawn on a line not yet ended: a bar left unfinished by an error.
let openLine: NodeJS.WriteStream | null = null;

/** Ends the line of a bar left unfinished, so that what is written next (an error) starts a line of its own. */
export function endProgressLine(): void {
  openLine?.write('\n');
  openLine = null;
}

export function createProgressBar(options: ProgressOptions): ProgressBar {
  const stream = options.stream ?? process.stderr;
  const enabled = stream.isTTY === true;
  const start = Date.now();
  let total = options.total;
  let lastDraw = 0;
  const initial = options.initial ?? 0;
  let done = initial;
  const draw = (final: boolean) => {
    const now = Date.now();
    if (!enabled || (!final && now - lastDraw < 100)) return;
    lastDraw = now;
    const seconds = Math.max((now - start) / 1000, 1e-3);
    const measured = final || now - start >= MIN_RATE_MS;
    const rate = Math.max(done - initial, 0) / seconds;
    const parts = [options.label];
    if (total !== undefined && total > 0) {
      const fraction = Math.min(done / total, 1);
      const width = 24;
      const filled = Math.round(fraction * width);
      parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(1)}%`);
      parts.push(`${formatAmount(done, options.unit)}/${formatAmount(total, options.unit)}`);
      // A file that grows while it is read goes past the size it had at the start: nothing left, not a negative time.
      const left = Math.max(total - done, 0);
      parts.push(`ETA ${formatSeconds(left === 0 ? 0 : measured && rate > 0 ? left / rate : Infinity)}`);
    } else {
      parts.push(formatAmount(done, options.unit));
    }
    // Nothing done in this run (a collection all in the cache, an empty input): no rate, not '0 B/s'.
    if (done > initial) parts.push(`${measured ? formatAmount(rate, options.unit) : '--'}/s`);
    // Within the terminal's width (the last parts dropped, then cut): a line that wraps is not
    // redrawn by '\r', and every draw would leave one.
    const width = stream.columns > 0 ? stream.columns - 1 : Infinity;
    while (parts.length > 1 && parts.join('  ').length > width) parts.pop();
    stream.write(`\r${parts.join('  ').slice(0, width)}\x1b[K`);
    openLine = stream;
  };
  return {
    update(value: number, newTotal?: number) {
      done = value;
      if (newTotal !== undefined) total = newTotal;
      draw(false);
    },
    finish() {
      draw(true);
      if (enabled) stream.write('\n');
      openLine = null;
    },
  };
}

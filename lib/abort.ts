// What the calls taking a `signal` do when it aborts. The calls watching one signal share one
// 'abort' listener on it: a listener per call made Node.js warn of a leak (MaxListenersExceededWarning)
// once 11 calls at a time shared a signal, as a request-scoped signal passed to many calls does.
import { addAbortListener } from 'events';

const watched = new WeakMap<AbortSignal, { calls: Set<() => void>; listener: Disposable }>();

/**
 * Calls `onAbort` when `signal` aborts (at once if it has); returns what stops watching, for when
 * the call ends (success or failure): the last call to stop removes the signal's listener.
 */
export function watchAbort(signal: AbortSignal, onAbort: () => void): () => void {
  if (signal.aborted) {
    onAbort();
    return () => undefined;
  }
  let watching = watched.get(signal);
  if (watching === undefined) {
    const calls = new Set<() => void>();
    // Unlike signal.addEventListener's, this listener runs even if another one stops the event's propagation.
    const listener = addAbortListener(signal, () => {
      watched.delete(signal);
      for (const call of calls) call();
    });
    watched.set(signal, watching = { calls, listener });
  }
  const { calls, listener } = watching;
  const call = () => onAbort();  // an entry of its own, even for a function passed twice
  calls.add(call);
  return () => {
    calls.delete(call);
    if (calls.size > 0 || signal.aborted) return;  // aborted: the listener has gone with the event
    watched.delete(signal);
    listener[Symbol.dispose]();
  };
}

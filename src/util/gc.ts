// When to run a full garbage collection. A session's input arrives in buffers of up to a few
// MiB (borg sends objects up to 8 MiB), and its replies leave views and part lists behind;
// once handled they are garbage that holds native memory, and JSC's own heuristics let a lot
// of it pile up before collecting (a 1 GiB borg create peaked at 160-210 MiB of RSS, of which
// under 80 MiB were live). A full collection after every GC_EVERY_BYTES of traffic (input and
// output) of this thread, at most one per MIN_INTERVAL_MS, keeps the peak nearer what is live;
// with a small live heap one costs a few milliseconds. In `burg socket` each worker thread has
// its own heap and counts its own sessions' traffic, so many busy sessions do not collect more
// often than one.

const GC_EVERY_BYTES = 16 << 20;
const MIN_INTERVAL_MS = 20;

let since = 0;
let last = 0;

/** `n` bytes of input arrived or of output went out (either leaves garbage behind). */
export function trafficPassed(n: number): void {
  since += n;
  if (since < GC_EVERY_BYTES) return;
  const now = performance.now();
  if (now - last < MIN_INTERVAL_MS) return;
  since = 0;
  last = now;
  Bun.gc(true);
}

// When to run a full garbage collection. A session's input arrives in buffers of up to a few
// MiB (borg sends objects up to 8 MiB), and its replies leave views and part lists behind;
// once handled they are garbage that holds native memory, and JSC's own heuristics let a lot
// of it pile up before collecting (a 1 GiB borg create peaked at 160-210 MiB of RSS, of which
// under 80 MiB were live). A full collection after every GC_EVERY_BYTES of traffic (input and
// output) of this thread, at most one per MIN_INTERVAL_MS, keeps the peak nearer what is live;
// with a small live heap one costs a few milliseconds. In `burg socket` each worker thread has
// its own heap and counts its own sessions' traffic, so many busy sessions do not collect more
// often than one.
//
// Small requests leave more garbage per byte: each is a decoded message, a promise and a reply
// list whatever its size. So a collection also comes after GC_EVERY_REQUESTS requests. Without
// it a session of 200,000 gets of 4 KiB (a collection every ~4,000) peaked anywhere from 70 to
// 86 MiB from run to run; with it, at 68 MiB each time, at the same CPU within the noise.

const GC_EVERY_BYTES = 16 << 20;
const GC_EVERY_REQUESTS = 2000;
const MIN_INTERVAL_MS = 20;

let since = 0;
let requests = 0;
let last = 0;

/** `n` bytes of input arrived or of output went out (either leaves garbage behind). */
export function trafficPassed(n: number): void {
  since += n;
  if (since >= GC_EVERY_BYTES) collect();
}

/** A request has been handled. */
export function requestHandled(): void {
  if (++requests >= GC_EVERY_REQUESTS) collect();
}

function collect(): void {
  const now = performance.now();
  if (now - last < MIN_INTERVAL_MS) return;
  since = 0;
  requests = 0;
  last = now;
  Bun.gc(true);
}

// util/gc.ts: full collections by traffic and by the number of requests handled.

import { afterEach, expect, test } from "bun:test";
import { requestHandled, trafficPassed } from "../../../src/util/gc.ts";

const realGc = Bun.gc;
let collections = 0;
function countCollections(): void {
  collections = 0;
  (Bun as unknown as { gc: (force?: boolean) => void }).gc = () => {
    collections++;
  };
}
afterEach(() => {
  (Bun as unknown as { gc: typeof realGc }).gc = realGc;
});

/** Calls of `step` until the first collection (the counters start from wherever they were). */
async function untilCollected(step: () => void): Promise<number> {
  await Bun.sleep(25); // past the shortest interval between collections
  const before = collections;
  for (let i = 1; i <= 1_000_000; i++) {
    step();
    if (collections > before) return i;
  }
  return -1;
}

test("a collection after every 2,000 requests, however small they are", async () => {
  countCollections();
  await untilCollected(requestHandled); // whatever was counted before
  expect(await untilCollected(requestHandled)).toBe(2000);
  expect(await untilCollected(requestHandled)).toBe(2000);
  // and not twice within 20 ms
  for (let i = 0; i < 5000; i++) requestHandled();
  expect(collections).toBe(3);
});

test("a collection after every 16 MiB of traffic; a collection resets both counts", async () => {
  countCollections();
  await untilCollected(() => trafficPassed(1 << 20));
  expect(await untilCollected(() => trafficPassed(1 << 20))).toBe(16);
  for (let i = 0; i < 1999; i++) requestHandled();
  expect(await untilCollected(() => trafficPassed(1 << 20))).toBe(16);
  expect(await untilCollected(requestHandled)).toBe(2000);
});

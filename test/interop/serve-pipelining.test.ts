// Many requests in flight, as borg pipelines them: hundreds of 64 KiB puts (the size at which
// a request straddles the server's input buffers most often) and then gets of all of them,
// through dist/burg serve and through burg socket. Every object must come back exactly as it
// went in: this also catches a recycled buffer given back before its reply was written.

import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { RpcClient } from "../support/rpc-client.ts";
import { BURG, requireBurg, tempDir } from "../support/env.ts";
import { testScope } from "../support/scope.ts";
import { startBurgSocket } from "../support/socket-server.ts";

const scope = testScope();

describe("pipelined requests through burg serve", () => {
  // Each size through stdio (burg serve) and through a UNIX socket (burg socket, reached with
  // burg connect): the two ways replies are written, and get buffers recycled.
  for (const [size, via] of [
    [65536, "serve"],
    [4096, "serve"],
    [2 * 1024 * 1024 + 7, "serve"],
    [65536, "socket"],
    [2 * 1024 * 1024 + 7, "socket"],
  ] as const) {
    test(`${size}-byte objects through burg ${via}: what goes in comes back`, async () => {
      requireBurg();
      const home = tempDir();
      const repo = join(home, "repo");
      const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, BURG_CONFIG_DIR: join(home, "cfg") };
      let server: string[] = [BURG, "serve"];
      if (via === "socket") {
        const sock = join(home, "burg.sock");
        await startBurgSocket(scope, ["--socket", sock], { env });
        server = [BURG, "connect", sock];
      }
      const count = size > 1 << 20 ? 40 : 600;
      const objects: Array<{ id: Uint8Array; digest: string }> = [];
      const put = new RpcClient(server, env);
      await put.negotiate();
      await put.open(repo, true);
      await put.pipeline(
        "put",
        (function* () {
          for (let i = 0; i < count; i++) {
            const id = crypto.getRandomValues(new Uint8Array(32));
            const data = new Uint8Array(size);
            crypto.getRandomValues(data.subarray(0, Math.min(size, 65536)));
            data[size - 1] = i & 0xff;
            objects.push({ id, digest: createHash("sha256").update(data).digest("hex") });
            yield { id, data };
          }
        })(),
      );
      await put.call("commit", { save_space: false, compact: true, threshold: 0.1, cleanup_commits: false });
      expect(await put.call("__len__", {})).toBe(count);
      await put.close();

      const get = new RpcClient(server, env);
      await get.negotiate();
      await get.open(repo);
      const back = await get.pipeline("get", objects.map((o) => ({ id: o.id })));
      await get.close();
      expect(back.length).toBe(count);
      for (let i = 0; i < count; i++) {
        expect(createHash("sha256").update(back[i] as Uint8Array).digest("hex")).toBe(objects[i]!.digest);
      }
    }, 120_000);
  }
});

import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, SocketListener } from "bun";
import { join } from "node:path";
import { READ_HIGH_WATER, SocketStream, socketHandlers } from "../../../src/transport/socket-stream.ts";
import { testScope } from "../../support/scope.ts";

const scope = testScope();
const tempDir = (prefix: string) => scope.tempDir(prefix);

type Conn = SocketStream | undefined;

const listeners: SocketListener<Conn>[] = [];
afterEach(() => {
  for (const l of listeners.splice(0)) l.stop(true);
});

/** A listener whose accepted connections arrive through the returned queue. */
function listen(): { path: string; next(): Promise<SocketStream> } {
  const path = join(tempDir("burg-sockstream-"), "s.sock");
  const accepted: SocketStream[] = [];
  let wake: (() => void) | null = null;
  const l = Bun.listen<Conn>({
    unix: path,
    socket: {
      ...socketHandlers(),
      open(socket: Socket<Conn>) {
        socket.data = new SocketStream(socket as Socket<unknown>);
        accepted.push(socket.data);
        wake?.();
      },
    },
  });
  listeners.push(l);
  return {
    path,
    async next() {
      while (accepted.length === 0) await new Promise<void>((r) => (wake = r));
      return accepted.shift()!;
    },
  };
}

async function connect(path: string): Promise<SocketStream> {
  let stream: SocketStream | null = null;
  await Bun.connect<Conn>({
    unix: path,
    socket: {
      ...socketHandlers(),
      open(socket: Socket<Conn>) {
        stream = new SocketStream(socket as Socket<unknown>);
        socket.data = stream;
      },
    },
  });
  return stream!;
}

function pattern(i: number, size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let j = 0; j < size; j += 4096) b[j] = (i + j) & 0xff;
  b[size - 1] = i & 0xff;
  return b;
}

describe("SocketStream", () => {
  test("a reader that does not read pauses the peer: input stays bounded and the writer waits", async () => {
    const srv = listen();
    const client = await connect(srv.path);
    const server = await srv.next();
    const CHUNK = 1 << 20;
    const TOTAL = 64;
    let written = 0;
    const writing = (async () => {
      for (let i = 0; i < TOTAL; i++) {
        await client.write(pattern(i, CHUNK));
        written++;
      }
      await client.flush();
    })();
    while (server.bufferedInputBytes < READ_HIGH_WATER) await Bun.sleep(5);
    // Give an unpaused socket every chance to swallow the rest.
    await Bun.sleep(200);
    expect(written).toBeLessThan(TOTAL);
    expect(server.bufferedInputBytes).toBeLessThanOrEqual(READ_HIGH_WATER + 2 * CHUNK);

    // Now read everything: it arrives complete and in order, and the writer finishes.
    const received = new Uint8Array(TOTAL * CHUNK);
    let off = 0;
    for await (const chunk of server.readable) {
      received.set(chunk, off);
      off += chunk.length;
      if (off === TOTAL * CHUNK) break;
    }
    await writing;
    expect(off).toBe(TOTAL * CHUNK);
    for (let i = 0; i < TOTAL; i++) {
      expect(Buffer.compare(received.subarray(i * CHUNK, (i + 1) * CHUNK), pattern(i, CHUNK))).toBe(0);
    }
    client.destroy();
  });

  test("output the kernel does not take at once is queued and delivered in order", async () => {
    const srv = listen();
    const client = await connect(srv.path);
    const server = await srv.next();
    const big = pattern(7, 24 << 20);
    const sending = server.write(big).then(() => server.flush());
    const parts: Uint8Array[] = [];
    let n = 0;
    for await (const chunk of client.readable) {
      parts.push(chunk);
      n += chunk.length;
      if (n >= big.length) break;
    }
    await sending;
    expect(Buffer.compare(Buffer.concat(parts), big)).toBe(0);
    client.destroy();
  });

  test("after the peer is gone, writes and flushes reject and reading ends", async () => {
    const srv = listen();
    const client = await connect(srv.path);
    const server = await srv.next();
    client.destroy();
    await server.whenClosed();
    await expect(server.write(new Uint8Array([1, 2, 3]))).rejects.toThrow();
    await expect(server.flush()).rejects.toThrow();
    const chunks: Uint8Array[] = [];
    for await (const c of server.readable) chunks.push(c);
    expect(chunks).toEqual([]);
  });

  test("shutdownWrite ends the peer's input while our side still reads", async () => {
    const srv = listen();
    const client = await connect(srv.path);
    const server = await srv.next();
    await client.write(new TextEncoder().encode("request"));
    await client.shutdownWrite();
    let got = "";
    for await (const c of server.readable) got += new TextDecoder().decode(c);
    expect(got).toBe("request");
    expect(client.isClosed).toBe(false);
    client.destroy();
  });
});

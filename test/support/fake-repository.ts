// An in-memory RepositoryHandle for unit tests of the RPC layer: transactions (put/delete
// visible at once, kept by commit, dropped by rollback or close), key, nonce, and a record of
// every call and every open, so tests can assert what reached the "engine".

import { AlreadyExists, DoesNotExist, ObjectNotFound } from "../../src/errors.ts";
import type { CheckOptions, CommitOptions, OpenOptions, OpenRepository, RepositoryHandle } from "../../src/rpc/backend.ts";
import { toHex } from "../../src/util/hex.ts";

export interface FakeRepoState {
  id: Uint8Array;
  committed: Map<string, Uint8Array>;
  key: Uint8Array;
  nonce: number | bigint | null;
  commits: CommitOptions[];
}

export class FakeStore {
  readonly repos = new Map<string, FakeRepoState>();
  readonly opens: Array<{ path: string; opts: OpenOptions }> = [];
  readonly handles: FakeRepository[] = [];
  /** When set, open() waits for this promise (a lock held by someone else). */
  openGate: Promise<void> | null = null;

  /** A repository that exists before the session starts. */
  addRepo(path: string, objects: Array<[Uint8Array, Uint8Array]> = []): FakeRepoState {
    const state: FakeRepoState = {
      id: new Uint8Array(32).fill(0x42),
      committed: new Map(objects.map(([id, data]) => [toHex(id), data])),
      key: new Uint8Array(0),
      nonce: null,
      commits: [],
    };
    this.repos.set(path, state);
    return state;
  }

  /** The promise of every open() call, settled or not. */
  readonly pending: Array<Promise<RepositoryHandle>> = [];

  private openWaiters: Array<() => void> = [];

  readonly open: OpenRepository = (path, opts) => {
    const p = this.doOpen(path, opts);
    this.pending.push(p);
    for (const w of this.openWaiters.splice(0)) w();
    return p;
  };

  /** Resolves once open() has been called at least n times. */
  async waitForOpenCalls(n: number): Promise<void> {
    while (this.pending.length < n) await new Promise<void>((r) => this.openWaiters.push(r));
  }

  private async doOpen(path: string, opts: OpenOptions): Promise<RepositoryHandle> {
    this.opens.push({ path, opts });
    if (this.openGate) await this.openGate;
    let state = this.repos.get(path);
    if (opts.create) {
      if (state) throw new AlreadyExists(path);
      state = this.addRepo(path);
    } else if (!state) {
      throw new DoesNotExist(path);
    }
    const handle = new FakeRepository(path, state);
    this.handles.push(handle);
    return handle;
  }
}

export class FakeRepository implements RepositoryHandle {
  readonly calls: string[] = [];
  closed = false;
  destroyed = false;
  private current: Map<string, Uint8Array>;

  constructor(
    readonly path: string,
    readonly state: FakeRepoState,
  ) {
    this.current = new Map(state.committed);
  }

  get id(): Uint8Array {
    return this.state.id;
  }

  private use(name: string): void {
    if (this.closed) throw new Error(`${name} on a closed repository`);
    this.calls.push(name);
  }

  /** When set, len() fails with this (a bug of the engine, say). */
  lenError: Error | null = null;

  len(): number {
    this.use("len");
    if (this.lenError) throw this.lenError;
    return this.current.size;
  }
  check(opts: CheckOptions): boolean {
    this.use(`check${opts.repair ? ":repair" : ""}`);
    return true;
  }
  commit(opts: CommitOptions): void {
    this.use(`commit${opts.compact ? ":compact" : ""}`);
    this.state.committed = new Map(this.current);
    this.state.commits.push(opts);
  }
  rollback(): void {
    this.use("rollback");
    this.current = new Map(this.state.committed);
  }
  destroy(): void {
    this.use("destroy");
    this.destroyed = true;
  }
  get(id: Uint8Array): Uint8Array {
    this.use("get");
    const v = this.current.get(toHex(id));
    if (v === undefined) throw new ObjectNotFound(toHex(id), this.path);
    return v;
  }
  list(limit: number | null, marker: Uint8Array | null): Uint8Array[] {
    this.use("list");
    let keys = [...this.current.keys()].sort();
    if (marker) keys = keys.filter((k) => k > toHex(marker));
    if (limit !== null) keys = keys.slice(0, limit);
    return keys.map((k) => new Uint8Array(Buffer.from(k, "hex")));
  }
  scan(limit: number | null, marker: Uint8Array | null): Uint8Array[] {
    this.calls.push("scan");
    return this.list(limit, marker);
  }
  put(id: Uint8Array, data: Uint8Array): void {
    this.use("put");
    this.current.set(toHex(id), data.slice());
  }
  delete(id: Uint8Array): void {
    this.use("delete");
    if (!this.current.delete(toHex(id))) throw new ObjectNotFound(toHex(id), this.path);
  }
  contains(id: Uint8Array): boolean {
    return this.current.has(toHex(id));
  }
  saveKey(keydata: Uint8Array): void {
    this.use("save_key");
    this.state.key = keydata.slice();
  }
  loadKey(): Uint8Array {
    this.use("load_key");
    return this.state.key;
  }
  getFreeNonce(): number | bigint | null {
    this.use("get_free_nonce");
    return this.state.nonce;
  }
  commitNonceReservation(next: number | bigint): void {
    this.use("commit_nonce_reservation");
    this.state.nonce = next;
  }
  breakLock(): void {
    this.use("break_lock");
  }
  close(): void {
    if (this.closed) return;
    this.calls.push("close");
    this.current = new Map(this.state.committed);
    this.closed = true;
  }
}

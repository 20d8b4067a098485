// Error classes carrying borg's exception names, arguments and exit codes.
//
// borg's client rebuilds remote exceptions from the class name and the argument list
// (remote.py RemoteRepository.call_many.handle_error), and its own exit code depends on
// the class: Error subclasses exit 2 (EXIT_ERROR), warnings 1. Every error that can reach
// a client therefore keeps borg's class name (`borgName`) and borg's argument order.

export const EXIT_SUCCESS = 0;
export const EXIT_WARNING = 1;
export const EXIT_ERROR = 2;

export class BurgError extends Error {
  /** The exception class name borg uses for this error (sent over RPC as exception_class). */
  readonly borgName: string;
  /** The arguments borg's constructor takes, in borg's order (sent as exception_args). */
  readonly borgArgs: Array<string | number | Uint8Array | null>;
  readonly exitCode: number;
  /** ErrorWithTraceback in borg: the client prints a traceback for these. */
  readonly traceback: boolean;

  constructor(
    borgName: string,
    message: string,
    borgArgs: Array<string | number | Uint8Array | null> = [],
    opts: { exitCode?: number; traceback?: boolean; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = borgName;
    this.borgName = borgName;
    this.borgArgs = borgArgs;
    this.exitCode = opts.exitCode ?? EXIT_ERROR;
    this.traceback = opts.traceback ?? false;
  }
}

/** Format borg's docstring-style messages: "Repository {} does not exist." */
function fmt(template: string, args: ReadonlyArray<unknown>): string {
  let i = 0;
  return template.replace(/\{\}/g, () => String(args[i++] ?? ""));
}

function defineError(borgName: string, template: string, traceback = false) {
  return class extends BurgError {
    constructor(...args: Array<string | number>) {
      super(borgName, fmt(template, args), args, { traceback });
    }
  };
}

// Names and messages as borg 1.2's repository.py / remote.py / locking.py define them.
export const DoesNotExist = defineError("DoesNotExist", "Repository {} does not exist.");
export const AlreadyExists = defineError("AlreadyExists", "A repository already exists at {}.");
export const PathAlreadyExists = defineError("PathAlreadyExists", "There is already something at {}.");
export const ParentPathDoesNotExist = defineError(
  "ParentPathDoesNotExist",
  "The parent path of the repo directory [{}] does not exist.",
);
export const InvalidRepository = defineError("InvalidRepository", "{} is not a valid repository. Check repo config.");
export const InvalidRepositoryConfig = defineError(
  "InvalidRepositoryConfig",
  "{} does not have a valid configuration. Check repo config [{}].",
);
export const AtticRepository = defineError("AtticRepository", 'Attic repository detected. Please run "borg upgrade {}".');
export const CheckNeeded = defineError("CheckNeeded", 'Inconsistency detected. Please run "borg check {}".', true);
export const InsufficientFreeSpaceError = defineError(
  "InsufficientFreeSpaceError",
  "Insufficient free space to complete transaction (required: {}, available: {}).",
);
export const StorageQuotaExceeded = defineError(
  "StorageQuotaExceeded",
  "The storage quota ({}) has been exceeded ({}). Try deleting some archives.",
);
/**
 * burg's own: a write of the transaction ran out of space (ENOSPC, or EDQUOT for a user's disk
 * quota). borg's serve passes the bare OSError on; this says what the server did about it.
 */
export class DiskFull extends BurgError {
  constructor(
    path: string,
    during: string,
    reason: string,
    opts: { cause?: unknown; outcome?: string } = {},
  ) {
    const outcome =
      opts.outcome ?? "the transaction was rolled back and what it had written removed, so the repository is at its last commit";
    super(
      "DiskFull",
      `${reason} in repository ${path} (during ${during}): ${outcome}. Free some space and run the command again.`,
      [path, during, reason],
      opts,
    );
  }
}
export const PathNotAllowed = defineError("PathNotAllowed", "Repository path not allowed: {}");
export const InvalidRPCMethod = defineError("InvalidRPCMethod", "RPC method {} is not valid");
export const UnexpectedRPCDataFormatFromClient = defineError(
  "UnexpectedRPCDataFormatFromClient",
  "Borg {}: Got unexpected RPC data format from client.",
);

export class ObjectNotFound extends BurgError {
  constructor(idHex: string, repo: string) {
    super("ObjectNotFound", `Object with key ${idHex} not found in repository ${repo}.`, [idHex, repo], {
      traceback: true,
    });
  }
}

/** borg's helpers.IntegrityError; the message names segment and offset where they are known. */
export class IntegrityError extends BurgError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super("IntegrityError", `Data integrity error: ${message}`, [message], { traceback: true, ...opts });
  }
}

/** Raised when a file's XXH64 integrity digests (integrity.N) do not match. */
export class FileIntegrityError extends BurgError {
  constructor(path: string) {
    super("FileIntegrityError", `File failed integrity check: ${path}`, [path], { traceback: true });
  }
}

/** A client asked for something its --permissions do not allow. */
export class PermissionDenied extends BurgError {
  constructor(message: string) {
    // borg 2 uses PermissionDenied; borg 1.x clients print the message with exit code 2.
    super("PermissionDenied", message, [message]);
  }
}

/** A usage error on burg's own command line (exit code 2, like argparse errors in borg). */
export class UsageError extends BurgError {
  constructor(message: string) {
    super("UsageError", message, [message]);
  }
}

/** Nonce hardening: a request to lower the stored nonce. */
export class NonceRegression extends BurgError {
  constructor(message: string) {
    super("NonceRegression", message, [message]);
  }
}

export function isBurgError(e: unknown): e is BurgError {
  return e instanceof BurgError;
}

/**
 * A hash index file (index.N) is malformed. borg's C hashindex raises ValueError with these
 * messages, and Repository.open_index catches ValueError to rebuild the index from segments.
 */
export class HashIndexFormatError extends BurgError {
  constructor(message: string) {
    super("ValueError", message, [message], { traceback: true });
  }
}

/** A key that has to be in a hash index is not (borg's KeyError, e.g. an unknown list() marker). */
export class HashIndexKeyError extends BurgError {
  constructor(keyHex: string) {
    super("KeyError", `key not in index: ${keyHex}`, [keyHex], { traceback: true });
  }
}

/**
 * A hash index holds a segment number in the reserved range above MAX_VALUE (a corrupted
 * index); borg's NSIndex asserts "maximum number of segments reached".
 */
export class HashIndexValueError extends BurgError {
  constructor(message = "maximum number of segments reached") {
    super("AssertionError", message, [message], { traceback: true });
  }
}

/** borg raises a plain ValueError for some refusals (e.g. destroy or repair of an append-only repo). */
export class ValueError extends BurgError {
  constructor(message: string) {
    super("ValueError", message, [message], { traceback: true });
  }
}

// Lock errors with the names, arguments and messages of borg 1.2's locking.py. borg's
// LockError/LockTimeout are plain Errors; LockErrorT and its subclasses show a traceback.

/** The common base of all lock errors here: `e instanceof LockingError` catches each of them. */
export abstract class LockingError extends BurgError {}

/** borg's LockError: "Failed to acquire the lock {}." */
export class LockError extends LockingError {
  constructor(path: string) {
    super("LockError", `Failed to acquire the lock ${path}.`, [path]);
  }
}

/** borg's LockErrorT: like LockError, with a traceback. */
export class LockErrorT extends LockingError {
  constructor(path: string) {
    super("LockErrorT", `Failed to acquire the lock ${path}.`, [path], { traceback: true });
  }
}

/** borg's LockTimeout (a LockError): the lock stayed taken for the whole lock wait. */
export class LockTimeout extends LockingError {
  constructor(path: string) {
    super("LockTimeout", `Failed to create/acquire the lock ${path} (timeout).`, [path]);
  }
}

/** borg's LockFailed (a LockErrorT): the lock files could not be created, e.g. read-only file system. */
export class LockFailed extends LockingError {
  constructor(path: string, reason: string, opts: { cause?: unknown } = {}) {
    super("LockFailed", `Failed to create/acquire the lock ${path} (${reason}).`, [path, reason], {
      traceback: true,
      ...opts,
    });
  }
}

/**
 * burg's own: a break-lock request that would have removed the lock of a live writer (or, for a
 * restricted client, of a holder this host cannot prove dead). The message lists the holders.
 */
export class LockBreakRefused extends LockingError {
  constructor(path: string, why: string, holders: string[]) {
    const message = `Not breaking the lock ${path}: ${why}:\n${holders.join("\n")}`;
    super("LockBreakRefused", message, [message]);
  }
}

/**
 * burg's own: two writers met in one repository (its lock was broken from outside while a
 * transaction was open). The later commit fails with this and its changes are dropped; what
 * the other writer committed stays.
 */
export class ConcurrentWriteConflict extends BurgError {
  constructor(repo: string, detail: string) {
    const message =
      `Another writer changed the repository ${repo} while this session's transaction was open ` +
      `(${detail}); was its lock broken from outside? This session's changes are not committed; run it again.`;
    super("ConcurrentWriteConflict", message, [message]);
  }
}

/** borg's NotLocked (a LockErrorT). */
export class NotLocked extends LockingError {
  constructor(path: string) {
    super("NotLocked", `Failed to release the lock ${path} (was not locked).`, [path], { traceback: true });
  }
}

/** borg's NotMyLock (a LockErrorT). */
export class NotMyLock extends LockingError {
  constructor(path: string) {
    super("NotMyLock", `Failed to release the lock ${path} (was/is locked, but not by me).`, [path], {
      traceback: true,
    });
  }
}

export function isLockError(e: unknown): e is LockingError {
  return e instanceof LockingError;
}

/**
 * A request's arguments do not fit the method: missing, of the wrong type or the wrong size.
 * borg's server raises python's TypeError here (e.g. "put() missing 1 required positional
 * argument: 'data'"), which its client shows with the remote traceback.
 */
export class RpcArgumentError extends BurgError {
  constructor(message: string) {
    super("TypeError", message, [message], { traceback: true });
  }
}

/**
 * A repository method was called before open() (borg's server fails with an AttributeError on
 * None there; this says what happened).
 */
export class RepositoryNotOpen extends BurgError {
  constructor(method: string) {
    super("RepositoryNotOpen", `Repository is not open: call open() before ${method}().`, [method]);
  }
}

/** A command stopped by a signal; the exit code is borg's EXIT_SIGNAL_BASE (128) + the signal number. */
export class Interrupted extends BurgError {
  constructor(signal: string, signo: number) {
    super("Interrupted", `Interrupted by ${signal}.`, [signal], { exitCode: 128 + signo });
  }
}

/** borg's PasscommandFailure: BORG_PASSCOMMAND could not be run or failed. */
export class PasscommandFailure extends BurgError {
  constructor(reason: string) {
    super("PasscommandFailure", `passcommand supplied in BORG_PASSCOMMAND failed: ${reason}`, [reason]);
  }
}

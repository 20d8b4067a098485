// OS errors rendered the way Python's str(OSError) renders them ("[Errno 13] Permission denied:
// '/repo/lock.exclusive.x.tmp'"), because borg puts that text into LockFailed's second argument
// and a borg client prints it.

const ERRNO: Record<string, [number, string]> = {
  EPERM: [1, "Operation not permitted"],
  ENOENT: [2, "No such file or directory"],
  EIO: [5, "Input/output error"],
  EACCES: [13, "Permission denied"],
  EBUSY: [16, "Device or resource busy"],
  EEXIST: [17, "File exists"],
  ENOTDIR: [20, "Not a directory"],
  EISDIR: [21, "Is a directory"],
  EINVAL: [22, "Invalid argument"],
  EMFILE: [24, "Too many open files"],
  ENOSPC: [28, "No space left on device"],
  EROFS: [30, "Read-only file system"],
  EMLINK: [31, "Too many links"],
  ENAMETOOLONG: [36, "File name too long"],
  ENOTEMPTY: [39, "Directory not empty"],
  ELOOP: [40, "Too many levels of symbolic links"],
  ESTALE: [116, "Stale file handle"],
  EDQUOT: [122, "Disk quota exceeded"],
};

export function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

export function osErrorText(e: unknown, path?: string): string {
  const err = e as NodeJS.ErrnoException;
  const code = err?.code;
  const known = code === undefined ? undefined : ERRNO[code];
  if (known === undefined) return err?.message ?? String(e);
  const where = path ?? err.path;
  return `[Errno ${known[0]}] ${known[1]}` + (where ? `: '${where}'` : "");
}

#!/usr/bin/python3
# A FUSE file system for tests (Debian's python3-fusepy): it passes everything through to a
# backing directory, except that reads overlapping chosen byte ranges of chosen files fail with
# EIO, like unreadable sectors of a dying disk.
#
#   faultfs.py BACKING MOUNTPOINT FAULTS_JSON [TRACE_DIR]
#   faultfs.py materialize TRACE_DIR OUT_ROOT N...
#
# FAULTS_JSON (re-read whenever its mtime changes) is {"eio": [{"path": "data/0/3",
# "start": 1000, "end": 2000}, ...]} with paths relative to BACKING. A file that is replaced
# (renamed over) or removed loses its faults: the bad sectors were the old file's. Mounted with
# direct_io, so every read reaches this process with the offset and size the reader asked for.
#
# Power loss. With TRACE_DIR the file system also records what a power cut would leave: data
# written to a file is durable only once the file is fsync'ed (or fdatasync'ed), and a new,
# renamed or removed directory entry only once its directory is fsync'ed (the strict POSIX
# model, SQLite's crash-test VFS and ALICE's). Every change is numbered; at each fsync the file's
# content is copied into TRACE_DIR/store, at each directory fsync the directory's entries are
# recorded. `materialize` then builds, for each event number N, the tree a power cut right
# after event N leaves behind, in OUT_ROOT/N. getattr of /.faultfs-mark-LABEL records a marker
# (a test's "this command has returned"), so that a crash point knows what had succeeded.

import errno
import json
import os
import shutil
import sys
import threading

from fusepy import FUSE, FuseOSError, Operations


class Trace:
    """Numbered events and the durable state they make (see the top of the file)."""

    def __init__(self, backing, trace_dir):
        self.backing = backing
        self.dir = trace_dir
        os.makedirs(os.path.join(trace_dir, "store"), exist_ok=True)
        self.ids = {"": ("d", 0)}
        self.next_id = 1
        self.n = 0
        self.lock = threading.RLock()
        initial = {"dirs": {}, "files": {}}
        for root, dirs, files in os.walk(backing):
            rel = os.path.relpath(root, backing)
            rel = "" if rel == "." else rel
            entries = {}
            for name in dirs + files:
                kind = "d" if name in dirs else "f"
                key = os.path.join(rel, name)
                self.ids[key] = (kind, self.new_id())
                entries[name] = list(self.ids[key])
                if kind == "f":
                    snap = "init-%d" % self.ids[key][1]
                    shutil.copyfile(os.path.join(root, name), os.path.join(trace_dir, "store", snap))
                    initial["files"][str(self.ids[key][1])] = snap
            initial["dirs"][str(self.ids[rel][1])] = entries
        with open(os.path.join(trace_dir, "initial.json"), "w") as f:
            json.dump(initial, f)
        self.out = open(os.path.join(trace_dir, "trace.jsonl"), "a", buffering=1)

    def new_id(self):
        self.next_id += 1
        return self.next_id - 1

    def event(self, ev):
        self.n += 1
        ev["i"] = self.n
        self.out.write(json.dumps(ev) + "\n")

    @staticmethod
    def key(path):
        return path.strip("/")

    def created(self, path, kind):
        with self.lock:
            self.ids[self.key(path)] = (kind, self.new_id())
            self.event({"ev": "op", "what": "create" if kind == "f" else "mkdir", "path": self.key(path)})

    def removed(self, path, what):
        with self.lock:
            k = self.key(path)
            for p in [p for p in self.ids if p == k or p.startswith(k + "/")]:
                del self.ids[p]
            self.event({"ev": "op", "what": what, "path": k})

    def renamed(self, old, new):
        with self.lock:
            o, n = self.key(old), self.key(new)
            for p in [p for p in self.ids if p == n or p.startswith(n + "/")]:
                del self.ids[p]
            for p in [p for p in self.ids if p == o or p.startswith(o + "/")]:
                self.ids[n + p[len(o):]] = self.ids.pop(p)
            self.event({"ev": "op", "what": "rename", "path": o, "to": n})

    def linked(self, target, source):
        with self.lock:
            self.ids[self.key(target)] = self.ids[self.key(source)]
            self.event({"ev": "op", "what": "link", "path": self.key(target)})

    def changed(self, path, what):
        with self.lock:
            self.event({"ev": "op", "what": what, "path": self.key(path)})

    def file_synced(self, path):
        with self.lock:
            ident = self.ids.get(self.key(path))
            if not ident:
                return
            snap = "%d.%d" % (ident[1], self.n + 1)
            shutil.copyfile(os.path.join(self.backing, self.key(path)), os.path.join(self.dir, "store", snap))
            self.event({"ev": "fsync", "fid": ident[1], "snap": snap, "path": self.key(path)})

    def dir_synced(self, path):
        with self.lock:
            k = self.key(path)
            ident = self.ids.get(k)
            if not ident:
                return
            entries = {}
            for name in os.listdir(os.path.join(self.backing, k)):
                e = self.ids.get(os.path.join(k, name))
                if e:
                    entries[name] = list(e)
            self.event({"ev": "dirsync", "did": ident[1], "entries": entries, "path": k})

    def mark(self, label):
        with self.lock:
            self.event({"ev": "mark", "label": label})


def materialize(trace_dir, out_root, points):
    with open(os.path.join(trace_dir, "initial.json")) as f:
        initial = json.load(f)
    dirs = {int(k): v for k, v in initial["dirs"].items()}
    files = {int(k): v for k, v in initial["files"].items()}
    wanted = sorted(set(points))
    events = []
    with open(os.path.join(trace_dir, "trace.jsonl")) as f:
        for line in f:
            if line.strip():
                events.append(json.loads(line))
    e = 0
    for n in wanted:
        while e < len(events) and events[e]["i"] <= n:
            ev = events[e]
            if ev["ev"] == "fsync":
                files[ev["fid"]] = ev["snap"]
            elif ev["ev"] == "dirsync":
                dirs[ev["did"]] = ev["entries"]
            e += 1
        out = os.path.join(out_root, str(n))
        os.makedirs(out)
        seen = set()

        def build(did, at):
            if did in seen:
                return
            seen.add(did)
            for name, (kind, ident) in dirs.get(did, {}).items():
                p = os.path.join(at, name)
                if kind == "d":
                    os.mkdir(p)
                    build(ident, p)
                elif ident in files:
                    shutil.copyfile(os.path.join(trace_dir, "store", files[ident]), p)
                else:
                    open(p, "wb").close()  # linked durably, but its data never synced

        build(0, out)


def traced(op):
    """A change and its event under one lock, so that events are numbered in the order of the changes."""

    def run(self, *args):
        if self.trace is None:
            return op(self, *args)
        with self.trace.lock:
            return op(self, *args)

    return run


class FaultFs(Operations):
    def __init__(self, backing, faults_file, trace_dir=None):
        self.backing = os.path.realpath(backing)
        self.faults_file = faults_file
        self.mtime = None
        self.eio = {}
        self.dropped = set()
        self.lock = threading.Lock()
        self.trace = Trace(self.backing, trace_dir) if trace_dir else None

    def real(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def faults(self):
        with self.lock:
            try:
                mtime = os.stat(self.faults_file).st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime != self.mtime:
                self.mtime = mtime
                self.eio = {}
                self.dropped = set()
                if mtime is not None:
                    with open(self.faults_file) as f:
                        for r in json.load(f).get("eio", []):
                            self.eio.setdefault(r["path"].lstrip("/"), []).append((r["start"], r["end"]))
            return self.eio

    def forget(self, path):
        with self.lock:
            self.eio.pop(path.lstrip("/"), None)

    # ---- metadata
    def getattr(self, path, fh=None):
        if self.trace and path.startswith("/.faultfs-mark-"):
            self.trace.mark(path[len("/.faultfs-mark-"):])
            raise FuseOSError(errno.ENOENT)
        st = os.lstat(self.real(path))
        return {k: getattr(st, k) for k in ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid", "st_ino")}

    def access(self, path, mode):
        if not os.access(self.real(path), mode):
            raise FuseOSError(errno.EACCES)

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self.real(path))

    def statfs(self, path):
        st = os.statvfs(self.real(path))
        return {k: getattr(st, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def chmod(self, path, mode):
        os.chmod(self.real(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self.real(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self.real(path), times)

    def readlink(self, path):
        return os.readlink(self.real(path))

    def symlink(self, target, source):
        os.symlink(source, self.real(target))

    @traced
    def mkdir(self, path, mode):
        os.mkdir(self.real(path), mode)
        if self.trace:
            self.trace.created(path, "d")

    @traced
    def rmdir(self, path):
        os.rmdir(self.real(path))
        if self.trace:
            self.trace.removed(path, "rmdir")

    @traced
    def unlink(self, path):
        os.unlink(self.real(path))
        self.forget(path)
        if self.trace:
            self.trace.removed(path, "unlink")

    @traced
    def rename(self, old, new):
        os.rename(self.real(old), self.real(new))
        if self.trace:
            self.trace.renamed(old, new)
        self.forget(new)
        with self.lock:
            moved = self.eio.pop(old.lstrip("/"), None)
            if moved:
                self.eio[new.lstrip("/")] = moved

    @traced
    def link(self, target, source):
        os.link(self.real(source), self.real(target))
        if self.trace:
            self.trace.linked(target, source)

    # ---- files
    @traced
    def open(self, path, flags):
        fd = os.open(self.real(path), flags & ~os.O_DIRECT if hasattr(os, "O_DIRECT") else flags)
        if self.trace and flags & os.O_TRUNC:
            self.trace.changed(path, "truncate")
        return fd

    @traced
    def create(self, path, mode, fi=None):
        fd = os.open(self.real(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        if self.trace:
            self.trace.created(path, "f")
        return fd

    def read(self, path, size, offset, fh):
        for start, end in self.faults().get(path.lstrip("/"), ()):
            if offset < end and offset + size > start:
                raise FuseOSError(errno.EIO)
        return os.pread(fh, size, offset)

    @traced
    def write(self, path, data, offset, fh):
        n = os.pwrite(fh, data, offset)
        if self.trace:
            self.trace.changed(path, "write")
        return n

    @traced
    def truncate(self, path, length, fh=None):
        with open(self.real(path), "r+b") as f:
            f.truncate(length)
        if self.trace:
            self.trace.changed(path, "truncate")

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0

    @traced
    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        if self.trace:
            self.trace.file_synced(path)
        return 0

    @traced
    def fsyncdir(self, path, datasync, fh):
        fd = os.open(self.real(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.trace:
            self.trace.dir_synced(path)
        return 0

    def opendir(self, path):
        return 0

    def releasedir(self, path, fh):
        return 0


if __name__ == "__main__":
    if sys.argv[1] == "materialize":
        materialize(sys.argv[2], sys.argv[3], [int(n) for n in sys.argv[4:]])
        sys.exit(0)
    backing, mountpoint, faults_file = sys.argv[1:4]
    trace_dir = sys.argv[4] if len(sys.argv) > 4 else None
    FUSE(FaultFs(backing, faults_file, trace_dir), mountpoint, foreground=True, nothreads=False, direct_io=True, allow_other=True, default_permissions=True)

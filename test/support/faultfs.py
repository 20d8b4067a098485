#!/usr/bin/python3
# A FUSE file system for tests (Debian's python3-fusepy): it passes everything through to a
# backing directory, except that reads overlapping chosen byte ranges of chosen files fail with
# EIO, like unreadable sectors of a dying disk.
#
#   faultfs.py BACKING MOUNTPOINT FAULTS_JSON
#
# FAULTS_JSON (re-read whenever its mtime changes) is {"eio": [{"path": "data/0/3",
# "start": 1000, "end": 2000}, ...]} with paths relative to BACKING. A file that is replaced
# (renamed over) or removed loses its faults: the bad sectors were the old file's. Mounted with
# direct_io, so every read reaches this process with the offset and size the reader asked for.

import errno
import json
import os
import sys
import threading

from fusepy import FUSE, FuseOSError, Operations


class FaultFs(Operations):
    def __init__(self, backing, faults_file):
        self.backing = os.path.realpath(backing)
        self.faults_file = faults_file
        self.mtime = None
        self.eio = {}
        self.dropped = set()
        self.lock = threading.Lock()

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

    def mkdir(self, path, mode):
        os.mkdir(self.real(path), mode)

    def rmdir(self, path):
        os.rmdir(self.real(path))

    def unlink(self, path):
        os.unlink(self.real(path))
        self.forget(path)

    def rename(self, old, new):
        os.rename(self.real(old), self.real(new))
        self.forget(new)
        with self.lock:
            moved = self.eio.pop(old.lstrip("/"), None)
            if moved:
                self.eio[new.lstrip("/")] = moved

    def link(self, target, source):
        os.link(self.real(source), self.real(target))

    # ---- files
    def open(self, path, flags):
        return os.open(self.real(path), flags & ~os.O_DIRECT if hasattr(os, "O_DIRECT") else flags)

    def create(self, path, mode, fi=None):
        return os.open(self.real(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        for start, end in self.faults().get(path.lstrip("/"), ()):
            if offset < end and offset + size > start:
                raise FuseOSError(errno.EIO)
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        with open(self.real(path), "r+b") as f:
            f.truncate(length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0

    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    def fsyncdir(self, path, datasync, fh):
        fd = os.open(self.real(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    def opendir(self, path):
        return 0

    def releasedir(self, path, fh):
        return 0


if __name__ == "__main__":
    backing, mountpoint, faults_file = sys.argv[1:4]
    FUSE(FaultFs(backing, faults_file), mountpoint, foreground=True, nothreads=False, direct_io=True, allow_other=True, default_permissions=True)

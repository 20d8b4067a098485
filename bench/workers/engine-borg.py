# Benchmark worker (borg side): the same operations as engine-burg.ts with borg 1.2's own
# Repository and NSIndex, one per process.
import json, os, sys, time
from borg.logger import setup_logging
setup_logging(level="warning")
from borg.hashindex import NSIndex
from borg.repository import Repository

mode, args = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
if mode == "index-load":
    idx = NSIndex.read(args[0])
    print(json.dumps({"ms": (time.perf_counter() - t0) * 1000, "entries": len(idx)}))
elif mode == "put":
    path, count, size = args[0], int(args[1]), int(args[2])
    data = bytearray(os.urandom(min(size, 65536)) + bytes(max(0, size - 65536)))
    with Repository(path, create=True, exclusive=True) as repo:
        for i in range(count):
            data[0] = i & 0xff
            repo.put(os.urandom(32), bytes(data))
        repo.commit(compact=True)
    print(json.dumps({"ms": (time.perf_counter() - t0) * 1000, "count": count}))
else:
    raise SystemExit("unknown mode " + mode)

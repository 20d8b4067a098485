// borg 1.x repository on-disk constants: segment magic, entry tags and header layouts, size
// limits, defaults. Matches borg 1.2's repository.py (LoggedIO) and constants.py.
//
// Segment file: MAGIC, then entries, little-endian:
//   crc32:u32 | size:u32 | tag:u8 [| id:32 bytes | data]
// size counts the whole entry including the 9-byte header; the CRC32 covers everything after
// the CRC field (size, tag, id, data). PUT entries carry id and data, DELETE entries only the id,
// COMMIT entries nothing. A segment ending in a COMMIT marks a transaction as committed.

export const MAGIC = new TextEncoder().encode("BORG_SEG");
export const ATTIC_MAGIC = new TextEncoder().encode("ATTICSEG");
export const MAGIC_LEN = 8;

export const TAG_PUT = 0;
export const TAG_DELETE = 1;
export const TAG_COMMIT = 2;
/** Tags above this are treated as corruption (borg MAX_TAG_ID). */
export const MAX_TAG_ID = 15;

/** crc32 | size | tag */
export const HEADER_SIZE = 9;
/** crc32 | size | tag | id */
export const PUT_HEADER_SIZE = 41;
export const KEY_SIZE = 32;

/** Largest data payload of one PUT: 20 MiB minus the PUT header (constants.MAX_DATA_SIZE). */
export const MAX_DATA_SIZE = 20971479;
/** Largest segment entry (constants.MAX_OBJECT_SIZE). */
export const MAX_OBJECT_SIZE = MAX_DATA_SIZE + PUT_HEADER_SIZE;
export const MAX_SEGMENT_SIZE_LIMIT = 2 ** 32 - MAX_OBJECT_SIZE;

export const DEFAULT_MAX_SEGMENT_SIZE = 500 * 1024 * 1024;
export const DEFAULT_SEGMENTS_PER_DIR = 1000;
/** Largest page of ids list() and scan() return (constants.LIST_SCAN_LIMIT). */
export const LIST_SCAN_LIMIT = 100000;

/** The manifest's id: 32 zero bytes. A PUT of it always starts a new segment. */
export const MANIFEST_ID = new Uint8Array(32);

export const REPOSITORY_README = "This is a Borg Backup repository.\nSee https://borgbackup.readthedocs.io/\n";

/** The 9-byte COMMIT entry, always the same bytes. */
export const COMMIT_ENTRY: Uint8Array = (() => {
  const e = new Uint8Array(HEADER_SIZE);
  const dv = new DataView(e.buffer);
  dv.setUint32(4, HEADER_SIZE, true);
  e[8] = TAG_COMMIT;
  dv.setUint32(0, Bun.hash.crc32(e.subarray(4)) >>> 0, true);
  return e;
})();

// Sizes asserted once, as borg asserts its struct sizes.
if (MAX_OBJECT_SIZE !== 20 * 1024 * 1024) throw new Error("format: MAX_OBJECT_SIZE must be 20 MiB");
if (MAGIC.length !== MAGIC_LEN || ATTIC_MAGIC.length !== MAGIC_LEN) throw new Error("format: magic length");
if (PUT_HEADER_SIZE !== HEADER_SIZE + KEY_SIZE) throw new Error("format: put header size");

export function isManifestId(id: Uint8Array): boolean {
  if (id.length !== KEY_SIZE) return false;
  for (let i = 0; i < KEY_SIZE; i++) if (id[i] !== 0) return false;
  return true;
}


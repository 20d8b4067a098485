// Version and build identity. BURG_COMMIT is replaced at compile time by build/compile.ts.

declare const BURG_COMMIT: string | undefined;

export const VERSION = "0.1.0";
export const COMMIT: string = typeof BURG_COMMIT === "string" ? BURG_COMMIT : "source";
/** The borg version burg speaks as, sent in `negotiate` (borg 1.2 clients only check it is >= 1.0.8). */
export const BORG_COMPAT_VERSION: [number, number, number] = [1, 2, 4];

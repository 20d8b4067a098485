// Where worker threads start: the program's own entry point (main.ts), which tells by
// isMainThread that it runs in a worker. In the compiled executable that is the executable's
// embedded bundle (main.ts registers its import.meta.url at start); run from source (tests),
// main.ts next to this directory.

let entry: string | null = null;

export function setWorkerEntry(url: string): void {
  entry = url;
}

export function workerEntry(): string {
  return entry ?? new URL("../main.ts", import.meta.url).href;
}

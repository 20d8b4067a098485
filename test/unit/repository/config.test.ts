// The config file round-trips through Python's ConfigParser byte for byte, including the
// multi-line repokey value.

import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { IniConfig, readConfig, saveConfig } from "../../../src/repository/config.ts";
import { borgPython } from "../../support/borg-python.ts";
import { tempDir } from "../../support/env.ts";

describe("config", () => {
  test("text written by ConfigParser parses and serializes identically", () => {
    const dir = tempDir();
    borgPython(
      `
import sys, os
from configparser import ConfigParser
c = ConfigParser(interpolation=None)
c.add_section('repository')
for k, v in [('version','1'),('segments_per_dir','1000'),('max_segment_size','524288000'),('append_only','0'),
             ('storage_quota','0'),('additional_free_space','0'),('id', os.urandom(32).hex()),
             ('key', 'hqlhbGdvcml0aG2mc2hhMjU2pGRhdGHaAZ5CZlXGJi4W4C3\\nLpIbNhWA8N7hc6TyO0yAzGRCFXcEWA==')]:
    c.set('repository', k, v)
with open(sys.argv[1] + '/config', 'w') as f:
    c.write(f)
`,
      [dir],
    );
    const text = readFileSync(join(dir, "config"), "utf8");
    const c = IniConfig.parse(text, dir);
    expect(c.get("repository", "key")).toContain("\n");
    expect(c.serialize()).toBe(text);
    c.set("repository", "last_segment_checked", "12");
    saveConfig(dir, c);
    const back = borgPython(
      `
import sys
from configparser import ConfigParser
c = ConfigParser(interpolation=None)
c.read(sys.argv[1] + '/config')
print(c.get('repository', 'last_segment_checked'), repr(c.get('repository', 'key')))
`,
      [dir],
    );
    expect(back.trim()).toBe(`12 ${JSON.stringify(c.get("repository", "key")).replace(/"/g, "'")}`);
    expect(readConfig(dir).get("repository", "last_segment_checked")).toBe("12");
  });

  test("a config without a section is rejected clearly", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "config"), "version = 1\n");
    expect(() => readConfig(dir)).toThrow(/does not have a valid configuration/);
  });
});

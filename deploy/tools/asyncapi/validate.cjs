#!/usr/bin/env node
// Validate an AsyncAPI document as `asyncapi validate --fail-severity warn` (@asyncapi/cli 6.2.0) does:
// the CLI's own @asyncapi/parser with its default Spectral ruleset, $refs resolved from the file's
// location, and any diagnostic of severity error or warning fails (0 error, 1 warn, 2 info, 3 hint).
// The parser is 168 npm packages (~7 s to install) where the CLI is 1,268 (~57 s, most of CI's installs).
// Run by tests/ops with NODE_PATH=.tools/node/node_modules (`make ops-tools` installs package-lock.json).
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { Parser, fromFile } = require("@asyncapi/parser/cjs");

const NAMES = ["error", "warn", "info", "hint"];

async function main(file) {
  const source = path.resolve(file);
  const { document, diagnostics } = await new Parser().parse(fs.readFileSync(source, "utf8"), { source });
  for (const d of diagnostics) {
    const at = d.path.length ? d.path.join(".") : "(document)";
    console.log(`${NAMES[d.severity] ?? d.severity} ${d.code} ${at}: ${d.message}`);
  }
  const failing = diagnostics.filter((d) => d.severity <= 1);
  if (document === undefined || failing.length > 0) {
    console.log(`${file} is invalid: ${failing.length} error(s) or warning(s)`);
    return 1;
  }
  console.log(`${file} is valid`);
  return 0;
}

if (process.argv.length !== 3) {
  console.error("usage: node validate.cjs <asyncapi.yaml>");
  process.exit(2);
}
main(process.argv[2]).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);

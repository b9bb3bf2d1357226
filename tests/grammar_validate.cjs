// tests/grammar_validate.cjs: the independent check of tests/grammar_property.sh. Reads a
// manifest of "schema-file<TAB>output-file<TAB>stop" lines; every output whose generation
// ended cleanly ("grammar complete" or "end of generation") must parse as JSON and validate
// against its schema with ajv (draft 2020-12, ajv-formats for date/date-time/email/uuid).
// Outputs cut by max_tokens ("length") are counted, not validated. Any other stop reason
// fails. Exit 0 when all hold, 1 otherwise (each failure on stderr).
"use strict";
const fs = require("fs");
const Ajv2020 = require("ajv/dist/2020");
const addFormats = require("ajv-formats");

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const compiled = new Map();
let ok = 0, truncated = 0, failed = 0;
for (const line of fs.readFileSync(process.argv[2], "utf8").split("\n")) {
  if (!line) continue;
  const [schemaFile, outFile, stop] = line.split("\t");
  let out = fs.readFileSync(outFile, "utf8");
  if (out.endsWith("\n")) out = out.slice(0, -1); // `slmesh run` ends its output with a newline
  if (stop === "length") { truncated++; continue; }
  if (stop !== "grammar complete" && stop !== "end of generation") {
    console.error(`FAIL ${schemaFile} ${outFile}: stop '${stop}'`);
    failed++;
    continue;
  }
  if (!compiled.has(schemaFile)) compiled.set(schemaFile, ajv.compile(JSON.parse(fs.readFileSync(schemaFile, "utf8"))));
  const validate = compiled.get(schemaFile);
  let value;
  try {
    value = JSON.parse(out);
  } catch (e) {
    console.error(`FAIL ${schemaFile} ${outFile}: not JSON (${e.message}): ${JSON.stringify(out)}`);
    failed++;
    continue;
  }
  if (!validate(value)) {
    console.error(`FAIL ${schemaFile} ${outFile}: ${ajv.errorsText(validate.errors)}: ${JSON.stringify(out)}`);
    failed++;
    continue;
  }
  ok++;
}
console.log(`validated ${ok}, truncated (length) ${truncated}, failed ${failed}`);
process.exit(failed ? 1 : 0);

// Validate prometheus-operator objects (JSON lines on stdin) with the validators that
// @kubernetes-models/prometheus-operator generates from the upstream CRD schemas.
// Usage: node validate_crd.mjs <node_modules dir>  — prints one line per object.
import { pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";

const dir = process.argv[2];
const v1 = await import(
  pathToFileURL(`${dir}/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js`).href
);
let failed = 0;
for (const line of readFileSync(0, "utf8").split("\n").filter(Boolean)) {
  const obj = JSON.parse(line);
  const Kind = v1[obj.kind];
  if (obj.apiVersion !== "monitoring.coreos.com/v1" || !Kind) {
    console.log(`FAIL ${obj.kind}: no validator`);
    failed++;
    continue;
  }
  try {
    new Kind(obj).validate();
    console.log(`OK ${obj.kind}/${obj.metadata.name}`);
  } catch (e) {
    console.log(`FAIL ${obj.kind}/${obj.metadata.name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);

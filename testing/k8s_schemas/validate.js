// Validates Argo objects (JSON documents on stdin) against the schemas the pinned
// npm packages ship, each object schema CLOSED (additionalProperties: false): the
// packages' own validate() accepts misspelled fields. No schema is copied into the
// repository: they are read from node_modules (NODE_PATH) as the packages register them.
// Output: one JSON array, per document {ok, errors: [text]}.
"use strict";
const registry = require("@kubernetes-models/validate");
const captured = {};
const register = registry.register;
registry.register = (id, schema) => {
  captured[id] = schema;
  return register(id, schema);
};
const kinds = {
  Rollout: require("@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1").Rollout,
  AnalysisTemplate: require("@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1").AnalysisTemplate,
  Application: require("@kubernetes-models/argo-cd/argoproj.io/v1alpha1").Application,
};
const docs = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = docs.map(() => ({ ok: true, errors: [] }));
// The packages register a kind's schemas on its first validate(): run each kind's own
// check first (it also applies the formats, e.g. quantities, that the closed check skips).
docs.forEach((doc, i) => {
  const Kind = kinds[doc.kind];
  if (!Kind) {
    results[i] = { ok: false, errors: [`no schema for kind ${doc.kind}`] };
    return;
  }
  try {
    new Kind(doc).validate();
  } catch (e) {
    results[i].ok = false;
    results[i].errors.push(`package validate(): ${e.message}`);
  }
});
function close(schema) {
  if (Array.isArray(schema)) return schema.map(close);
  if (!schema || typeof schema !== "object") return schema;
  const out = {};
  for (const [key, value] of Object.entries(schema)) {
    // `properties` maps names to schemas: its keys are not keywords.
    if (key === "properties") {
      out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, close(v)]));
    } else {
      out[key] = key === "enum" || key === "required" ? value : close(value);
    }
  }
  // An object whose `properties` the package left empty is a map the CRD keeps open
  // (x-kubernetes-preserve-unknown-fields, which the packages drop): the Rollout's
  // trafficRouting.plugins, keyed by plugin name. Closing it would refuse every plugin.
  if (out.properties && Object.keys(out.properties).length > 0 &&
      out.additionalProperties === undefined &&
      !out["x-kubernetes-preserve-unknown-fields"]) {
    out.additionalProperties = false;
  }
  return out;
}
const Ajv = require("ajv");
const ajv = new Ajv({ strict: false, allErrors: true });
for (const format of ["int32", "int64", "double", "float", "byte", "date-time", "quantity", "string"]) {
  ajv.addFormat(format, true);
}
for (const [id, schema] of Object.entries(captured)) ajv.addSchema(close(schema), id);
docs.forEach((doc, i) => {
  const id = `argoproj.io.v1alpha1.${doc.kind}`;
  if (!captured[id]) return;
  if (!ajv.validate(id, doc)) {
    results[i].ok = false;
    for (const e of ajv.errors.slice(0, 5)) {
      const extra = e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : "";
      results[i].errors.push(`closed schema: ${e.instancePath || "/"} ${e.message}${extra}`);
    }
  }
});
process.stdout.write(JSON.stringify(results));

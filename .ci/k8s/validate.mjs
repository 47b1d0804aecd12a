// Validates Kubernetes manifests (multi-document YAML on stdin, as
// `kubectl kustomize` prints them) against the schemas of the Kubernetes
// API and of the custom resources Herald uses (KEDA's ScaledObject and
// TriggerAuthentication, prometheus-operator's ServiceMonitor and
// PrometheusRule), generated from their CRDs and pinned in package-lock.json.
// A kind with no known schema is an error, not a skip.
//
// usage: kubectl kustomize DIR | node validate.mjs NAME
import { parseAllDocuments } from "yaml";

const modules = {
  "keda.sh": "@kubernetes-models/keda/keda.sh",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator/monitoring.coreos.com",
};

/** The model module of an apiVersion and kind: core `v1`, `apps/v1`, CRDs. */
function modelPath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const base = modules[group] ?? (group ? `kubernetes-models/${group}` : "kubernetes-models");
  return `${base}/${version}/${kind}`;
}

async function problemsOf(resource) {
  const { apiVersion, kind } = resource ?? {};
  if (!apiVersion || !kind) return ["no apiVersion or kind"];
  let Model;
  try {
    Model = (await import(modelPath(apiVersion, kind)))[kind];
  } catch {
    return [`no schema for ${apiVersion} ${kind}`];
  }
  try {
    new Model(resource).validate();
    return [];
  } catch (e) {
    return (e.errors ?? [e]).map((err) =>
      err.instancePath !== undefined
        ? `${err.instancePath || "/"} ${err.message}${err.params?.additionalProperty ? `: ${err.params.additionalProperty}` : ""}`
        : String(err.message ?? err),
    );
  }
}

const name = process.argv[2] ?? "stdin";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const documents = parseAllDocuments(input);
let failed = 0;
let count = 0;
for (const document of documents) {
  if (document.errors.length) {
    console.error(`${name}: YAML: ${document.errors[0].message}`);
    failed++;
    continue;
  }
  const resource = document.toJS();
  if (resource === null) continue;
  count++;
  for (const problem of await problemsOf(resource)) {
    console.error(`${name}: ${resource.kind}/${resource.metadata?.name}: ${problem}`);
    failed++;
  }
}
if (count === 0) {
  console.error(`${name}: no resources`);
  process.exit(1);
}
console.log(`${name}: ${count} resources, ${failed === 0 ? "all valid" : `${failed} problems`}`);
process.exit(failed === 0 ? 0 : 1);

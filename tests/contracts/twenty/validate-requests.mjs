// Validates requests a client sent (as logged by the Twenty sandbox) against the
// official core OpenAPI description, after the documented patches (README.md), and
// the sandbox's answers against the responses the description declares.
//
// usage: node validate-requests.mjs <core-openapi.yaml> <requests.json>
// env:   CUTOVER_NODE_MODULES = directory holding ajv, ajv-formats, yaml
// prints one JSON summary line; exit 0 = every covered request valid, 1 = not, 2 = setup error.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const modules = process.env.CUTOVER_NODE_MODULES;
if (!modules || !fs.existsSync(path.join(modules, 'ajv'))) {
  console.error(`ajv/yaml not found under ${modules}: run scripts/setup-tools`);
  process.exit(2);
}
const require = createRequire(path.join(modules, 'noop.js'));
const YAML = require('yaml');
const Ajv2020 = require('ajv/dist/2020').default;
const addFormatsModule = require('ajv-formats');
const addFormats = addFormatsModule.default || addFormatsModule;

const [specPath, logPath] = process.argv.slice(2);
const spec = YAML.parse(fs.readFileSync(specPath, 'utf8'), { maxAliasCount: -1 });
const log = JSON.parse(fs.readFileSync(logPath, 'utf8'));

// ---- patches (each listed with its reason in README.md) ----------------------
const schemas = spec.components.schemas;
const requestSchemaNames = Object.keys(schemas).filter((n) => !n.endsWith('ForResponse'));
const CUSTOM_FIELDS = {
  // P7: fields `cutover schema apply` adds to standard objects.
  Person: { legacyCreatedAt: 'date-time', chartNumber: 'text', insuranceCarrier: 'text', referralSource: 'text', sourceSystemId: 'text' },
  Company: { legacyCreatedAt: 'date-time', sourceSystemId: 'text' },
  Note: { legacyCreatedAt: 'date-time' },
  Task: { legacyCreatedAt: 'date-time' },
};
function nullable(schema) {
  // P6: the spec never says null; the server takes null for nullable fields.
  if (schema && typeof schema.type === 'string') schema.type = [schema.type, 'null'];
  else if (schema && schema.$ref) return { anyOf: [schema, { type: 'null' }] };
  return schema;
}
function close(schema) {
  // P1: the server refuses unknown keys and unknown composite sub-keys.
  if (!schema || typeof schema !== 'object') return;
  if (schema.properties) {
    schema.additionalProperties = false;
    for (const [key, sub] of Object.entries(schema.properties)) {
      close(sub);
      schema.properties[key] = nullable(sub);
    }
  }
  if (schema.items) close(schema.items);
}
for (const name of requestSchemaNames) {
  const schema = schemas[name];
  if (!schema || !schema.properties) continue;
  const base = name.replace(/ForUpdate$/, '');
  const isCreate = base === name;
  for (const [key, sub] of Object.entries({ ...schema.properties })) {
    // P5: morph targets are listed as `targetPerson: string`; writes use the join column.
    if (/^target[A-Z]/.test(key) && sub.type === 'string' && !sub.format) {
      schema.properties[`${key}Id`] = { type: 'string', format: 'uuid' };
    }
    // P3: REST accepts createdBy.name (the spec lists only source).
    if (key === 'createdBy' && sub.properties) sub.properties.name = { type: 'string' };
  }
  if (isCreate) {
    // P2: client-chosen id and the original createdAt are accepted on create.
    schema.properties.id = { type: 'string', format: 'uuid' };
    schema.properties.createdAt = { type: 'string', format: 'date-time' };
  }
  for (const [field, kind] of Object.entries(CUSTOM_FIELDS[base] || {})) {
    schema.properties[field] = kind === 'date-time' ? { type: 'string', format: 'date-time' } : { type: 'string' };
  }
  // P4: `favorites` does not exist but is marked required (Note, Task, …).
  if (Array.isArray(schema.required)) {
    schema.required = schema.required.filter((r) => r !== 'favorites');
    if (schema.required.length === 0) delete schema.required;
  }
  close(schema);
}

// P8: responses — the spec never says null, a server returns null for empty fields.
function nullableDeep(schema) {
  if (!schema || typeof schema !== 'object') return;
  if (schema.properties) {
    for (const [key, sub] of Object.entries(schema.properties)) {
      nullableDeep(sub);
      schema.properties[key] = nullable(sub);
    }
  }
  if (schema.items) nullableDeep(schema.items);
}
for (const name of Object.keys(schemas).filter((n) => n.endsWith('ForResponse'))) nullableDeep(schemas[name]);
for (const response of Object.values(spec.components.responses || {})) {
  nullableDeep(response.content && response.content['application/json'] && response.content['application/json'].schema);
}
for (const item of Object.values(spec.paths)) {
  for (const operation of Object.values(item)) {
    for (const response of Object.values((operation && operation.responses) || {})) {
      nullableDeep(response.content && response.content['application/json'] && response.content['application/json'].schema);
    }
  }
}

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
spec.$id = 'spec';
ajv.addSchema(spec);

// ---- matching -------------------------------------------------------------------
const pointer = (...parts) => 'spec#/' + parts.map((p) => String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
const templates = Object.keys(spec.paths).map((template) => ({
  template,
  literal: !template.includes('{'),
  regex: new RegExp('^' + template.replace(/\{[^}]+\}/g, '([^/]+)') + '$'),
  names: [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]),
}));
function resolveParam(param) {
  if (!param.$ref) return param;
  return param.$ref.split('/').slice(1).reduce((node, key) => node[key], spec);
}
const compiled = new Map();
function validator(ref) {
  if (!compiled.has(ref)) compiled.set(ref, ajv.compile({ $ref: ref }));
  return compiled.get(ref);
}
function coerce(value, schema) {
  if (!schema) return value;
  if (schema.type === 'integer' || schema.type === 'number') return /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  if (schema.type === 'boolean') return value === 'true' ? true : value === 'false' ? false : value;
  return value;
}

const summary = { validated: 0, responses_validated: 0, skipped: [], failures: [] };
for (const entry of log) {
  const method = entry.method.toLowerCase();
  if (!entry.path.startsWith('/rest/')) {
    summary.skipped.push({ method: entry.method, path: entry.path, reason: 'not in the core spec' });
    continue;
  }
  const rel = entry.path.slice('/rest'.length);
  const candidates = templates.filter((t) => t.regex.test(rel)).sort((a, b) => Number(b.literal) - Number(a.literal));
  const match = candidates.find((t) => spec.paths[t.template][method]);
  if (!match) {
    summary.skipped.push({ method: entry.method, path: entry.path, reason: 'no such path/method in the core spec' });
    continue;
  }
  const operation = spec.paths[match.template][method];
  const problems = [];
  const groups = rel.match(match.regex).slice(1);
  const params = (operation.parameters || []).map(resolveParam);
  match.names.forEach((name, i) => {
    const param = params.find((p) => p.in === 'path' && p.name === name);
    if (param && !ajv.validate(param.schema, decodeURIComponent(groups[i]))) problems.push(`path ${name}: ${ajv.errorsText()}`);
  });
  for (const [name, raw] of entry.query) {
    const param = params.find((p) => p.in === 'query' && p.name === name);
    if (!param) {
      problems.push(`query parameter ${name} is not declared`);
      continue;
    }
    if (!ajv.validate(param.schema, coerce(raw, param.schema))) problems.push(`query ${name}=${raw}: ${ajv.errorsText()}`);
  }
  const hasBody = entry.body !== null && entry.body !== undefined;
  const content = operation.requestBody && operation.requestBody.content && operation.requestBody.content['application/json'];
  if (hasBody && !content) problems.push('a body was sent but the operation takes none');
  if (!hasBody && content && operation.requestBody.required) problems.push('the operation requires a body');
  if (hasBody && content) {
    const validate = validator(pointer('paths', match.template, method, 'requestBody', 'content', 'application/json', 'schema'));
    if (!validate(entry.body)) {
      const detail = validate.errors.map((e) => `${e.instancePath || '/'} ${e.message}${e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ''}`);
      problems.push('body: ' + [...new Set(detail)].join('; '));
    }
  }
  // The answer, when the operation declares one for that status.
  const declared = operation.responses && operation.responses[String(entry.status)];
  if (declared && entry.response !== undefined && entry.response !== null) {
    const ref = declared.$ref
      ? 'spec#' + declared.$ref.slice(1) + '/content/application~1json/schema'
      : pointer('paths', match.template, method, 'responses', String(entry.status), 'content', 'application/json', 'schema');
    const hasSchema = declared.$ref || (declared.content && declared.content['application/json']);
    if (hasSchema) {
      const validate = validator(ref);
      if (!validate(entry.response)) {
        const detail = validate.errors.slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`);
        problems.push(`response ${entry.status}: ` + [...new Set(detail)].join('; '));
      } else {
        summary.responses_validated += 1;
      }
    }
  }
  if (problems.length) summary.failures.push({ operationId: operation.operationId, method: entry.method, path: entry.path, problems });
  else summary.validated += 1;
}
console.log(JSON.stringify(summary));
process.exit(summary.failures.length ? 1 : 0);

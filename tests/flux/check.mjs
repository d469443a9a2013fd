// Checks Flux texts with InfluxData's Flux front end (libflux compiled to WASM, from the npm
// package @influxdata/flux-lsp-browser). Reads a JSON array of Flux texts on stdin and prints a
// JSON array of {valid, ast}: `valid` is libflux's semantic check (types and the standard
// library's function signatures), `ast` its parse tree.
//
// The package is built for browsers (its glue imports the .wasm as an ES module), so under Node
// we load the glue with that import replaced, instantiate the .wasm ourselves with the glue as
// its import object, and hand the instance's exports back to the glue.
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), 'node_modules', '@influxdata', 'flux-lsp-browser');
const WASM_IMPORT = "import * as wasm from './flux-lsp-browser_bg.wasm';";

let glue = readFileSync(join(pkg, 'flux-lsp-browser_bg.js'), 'utf8');
if (!glue.includes(WASM_IMPORT)) throw new Error('unexpected flux-lsp-browser glue: wasm import not found');
glue = glue.replace(WASM_IMPORT, 'let wasm;');
// The glue caches views of wasm memory at load time; do that once the instance exists.
glue = glue.replace(/\ncachedInt32Memory0 = new Int32Array\(wasm\.memory\.buffer\);\ncachedUint8Memory0 = new Uint8Array\(wasm\.memory\.buffer\);\s*$/, '\n');
glue += '\nexport function __attach(exports) {\n  wasm = exports;\n  cachedInt32Memory0 = new Int32Array(wasm.memory.buffer);\n  cachedUint8Memory0 = new Uint8Array(wasm.memory.buffer);\n}\n';

const tmp = mkdtempSync(join(tmpdir(), 'fluxcheck-'));
const gluePath = join(tmp, 'glue.mjs');
writeFileSync(gluePath, glue);
const g = await import(pathToFileURL(gluePath).href);
rmSync(tmp, { recursive: true, force: true });
const { instance } = await WebAssembly.instantiate(readFileSync(join(pkg, 'flux-lsp-browser_bg.wasm')),
  { './flux-lsp-browser_bg.js': g });
g.__attach(instance.exports);

const texts = JSON.parse(readFileSync(0, 'utf8'));
const out = texts.map((text) => {
  const f = new g.Flux(text);
  try {
    return { valid: f.is_valid(), ast: f.ast() };
  } finally {
    f.free();
  }
});
process.stdout.write(JSON.stringify(out));

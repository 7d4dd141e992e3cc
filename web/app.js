/* lmpack page: progressive, verified bundle loading + generation in WASM.
 *
 * Flow: fetch manifest.json -> fetch every tokenizer file and chunk in
 * manifest order (the head chunk first), each through the verified cache:
 *   cache hit  -> re-hash the cached bytes; a mismatch (partial or corrupt
 *                 entry) deletes it and falls through to the network;
 *   network    -> hash (XXH3-128 in wasm, lmpw_hash_hex) against the
 *                 manifest's xxh3 of the compressed bytes; a mismatch or a
 *                 wrong size stops loading with an error naming the file,
 *                 and the bytes are neither cached nor handed to the model;
 *   verified   -> stored in the cache keyed by the hash, then handed to wasm
 *                 (lmpw_add_chunk decompresses and places the tensors).
 * Nothing from a file that failed verification reaches the runtime.
 *
 * The page reports its state in <body data-state> ("loading", "ready",
 * "generating", "error") and counters in window.lmpackStats, which the
 * headless test (web/test-web.mjs) reads; window.lmpackDebug exposes the
 * logits call used for the native-vs-wasm comparison.
 */
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const BUNDLE = (params.get('bundle') || 'bundle/').replace(/\/?$/, '/');
const CTX = parseInt(params.get('ctx') || '0', 10) || 0;   /* 0: model's max, capped in wasm */
const CACHE_NAME = 'lmpack-chunks-v1';

const stats = { netFetches: 0, cacheHits: 0, cacheRejected: 0, bytesTotal: 0, bytesDone: 0,
                layersTotal: 0, layersDone: 0, loadMs: 0, error: '',
                memTrace: [] };   /* [step, WASM memory, malloc in use] after each file */
window.lmpackStats = stats;

let M = null;            /* the Emscripten module */
let ready = false;
let stopRequested = false;

function setState(s) { document.body.dataset.state = s; }

function fail(msg) {
  stats.error = msg;
  const e = $('error');
  e.textContent = msg;
  e.hidden = false;
  setState('error');
  $('generate').disabled = true;
}

function fmtBytes(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + ' GB';
  if (n >= 1e6) return (n / 1e6).toFixed(1) + ' MB';
  if (n >= 1e3) return (n / 1e3).toFixed(1) + ' kB';
  return n + ' B';
}

function showMemory() {
  if (M) $('mem').textContent = fmtBytes(M._lmpw_memory_bytes());
}

function showProgress() {
  const f = stats.bytesTotal ? stats.bytesDone / stats.bytesTotal : 0;
  $('bar').value = f;
  $('pct').textContent = Math.floor(f * 100) + '%';
  $('progress-text').textContent =
    `${fmtBytes(stats.bytesDone)} / ${fmtBytes(stats.bytesTotal)} · ` +
    `layers ${stats.layersDone} / ${stats.layersTotal}`;
  $('cache-text').textContent =
    `from network: ${stats.netFetches} · from cache: ${stats.cacheHits}` +
    (stats.cacheRejected ? ` · bad cache entries refetched: ${stats.cacheRejected}` : '');
  showMemory();
}

/* ---- wasm memory helpers ------------------------------------------------ */

function toHeap(bytes) {
  const p = M._malloc(Math.max(bytes.length, 1));
  if (!p) throw new Error(`out of WASM memory for ${bytes.length} bytes`);
  M.HEAPU8.set(bytes, p);
  return p;
}

function withCString(s, fn) {
  const n = M.lengthBytesUTF8(s) + 1;
  const p = M._malloc(n);
  M.stringToUTF8(s, p, n);
  try { return fn(p, n - 1); } finally { M._free(p); }
}

function wasmError() { return M.UTF8ToString(M._lmpw_error()); }

/* XXH3-128 (canonical hex) of bytes already in wasm memory. */
function hashAt(p, n) {
  const out = M._malloc(33);
  M._lmpw_hash_hex(p, n, out);
  const h = M.UTF8ToString(out);
  M._free(out);
  return h;
}

/* ---- manifest ----------------------------------------------------------- */

/* The bundle's manifest.json (docs/MANIFEST.md, written by manifest/)
 * reduced to what the page needs: files to fetch in load order, each with
 * the expected compressed size and XXH3-128. Order: the manifest's
 * "critical" files first (tokenizer files and the head chunk), then the
 * remaining files in manifest order (layer chunks ascending). */
function planFrom(man) {
  if (!man || typeof man !== 'object' || man.format !== 'lmpack-bundle' || !Array.isArray(man.chunks))
    throw new Error('manifest.json: not an lmpack bundle manifest (format / chunks missing)');
  if (man.version !== 1) throw new Error(`manifest.json: version ${man.version} is not supported (1)`);
  const all = [];
  for (const t of (man.tokenizer || []))
    all.push({ kind: 'tokenizer', file: t.file, size: t.size, hash: t.xxh3 });
  for (const c of man.chunks) {
    const l = Array.isArray(c.layers) ? c.layers : [0, -1];
    all.push({ kind: 'chunk', file: c.file, size: c.compressed_size, hash: c.xxh3_compressed,
               rawSize: c.raw_size, rawHash: c.xxh3_raw, head: c.role === 'head',
               first: l[0], last: l[1] });
  }
  const critical = (man.critical && man.critical.files) || [];
  const rank = (f) => { const i = critical.indexOf(f.file); return i < 0 ? critical.length : i; };
  const files = all.map((f, i) => [rank(f), i, f]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
                   .map((x) => x[2]);
  for (const f of files) {
    if (typeof f.file !== 'string' || !/^(chunks|tokenizer)\/[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(f.file))
      throw new Error(`manifest.json: bad file name ${JSON.stringify(f.file)}`);
    if (!/^[0-9a-f]{32}$/.test(f.hash || ''))
      throw new Error(`manifest.json: ${f.file}: no XXH3-128 hash`);
    if (!Number.isSafeInteger(f.size) || f.size < 0)
      throw new Error(`manifest.json: ${f.file}: bad size`);
    if (f.kind === 'chunk' && !f.head && !(Number.isInteger(f.first) && f.last >= f.first))
      throw new Error(`manifest.json: ${f.file}: bad layer range`);
  }
  const cfg = man.config || {};
  return { name: (man.model && man.model.name) || '', config: cfg, files,
           nLayers: cfg.num_hidden_layers || 0 };
}

/* ---- verified, cached fetching ------------------------------------------ */

let cache = null;
async function openCache() {
  try {
    if (self.caches) cache = await caches.open(CACHE_NAME);
  } catch (e) {
    cache = null;    /* e.g. storage disabled: load from the network only */
  }
  if (!cache) $('cache-text').textContent = 'Cache API unavailable: chunks will not be kept';
}

function cacheKey(hash) { return new URL(`lmpack-cache/${hash}`, location.href).href; }

/* Bytes of f from the cache, verified; or null. The bytes are copied into
 * wasm memory: returns {ptr, n} (caller frees ptr). */
async function fromCache(f) {
  if (!cache) return null;
  let resp;
  try { resp = await cache.match(cacheKey(f.hash)); } catch (e) { return null; }
  if (!resp) return null;
  let buf;
  try { buf = new Uint8Array(await resp.arrayBuffer()); } catch (e) { buf = null; }
  if (buf && buf.length === f.size) {
    const reserve = reserveFor(f);
    const p = toHeap(buf);
    if (hashAt(p, buf.length) === f.hash) return { ptr: p, n: buf.length, reserve };
    M._free(p);
    M._free(reserve);
  }
  /* Partial or corrupt entry: drop it and fetch again. */
  stats.cacheRejected++;
  try { await cache.delete(cacheKey(f.hash)); } catch (e) { /* ignore */ }
  return null;
}

async function fromNetwork(f) {
  stats.netFetches++;
  let resp;
  try {
    resp = await fetch(BUNDLE + f.file, { cache: 'no-store' });
  } catch (e) {
    throw new Error(`${f.file}: download failed (${e.message})`);
  }
  if (!resp.ok) throw new Error(`${f.file}: download failed (HTTP ${resp.status})`);
  const buf = new Uint8Array(await resp.arrayBuffer());
  if (buf.length !== f.size)
    throw new Error(`${f.file}: integrity check failed: ${buf.length} bytes, manifest says ${f.size} (truncated or altered)`);
  const reserve = reserveFor(f);
  const p = toHeap(buf);
  const h = hashAt(p, buf.length);
  if (h !== f.hash) {
    M._free(p);
    M._free(reserve);
    throw new Error(`${f.file}: integrity check failed: XXH3-128 ${h}, manifest says ${f.hash} (chunk rejected, not used)`);
  }
  if (cache) {
    try {
      await cache.put(cacheKey(f.hash), new Response(buf, {
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(buf.length) } }));
    } catch (e) { /* quota: keep going without caching this one */ }
  }
  return { ptr: p, n: buf.length, reserve };
}

/* Memory layout: a chunk's decompressed image should end up BELOW its
 * compressed bytes, so that freeing the compressed bytes returns them to the
 * top of the wasm heap rather than leaving a hole there (the heap never
 * shrinks). So a block of the raw size is allocated before the compressed
 * bytes are copied in, and wasm frees it just before decompressing. */
function reserveFor(f) {
  return f.kind === 'chunk' && f.rawSize > 0 ? M._malloc(f.rawSize + 256) : 0;
}

async function getVerified(f) {
  const hit = await fromCache(f);
  if (hit) { stats.cacheHits++; return hit; }
  return fromNetwork(f);
}

/* ---- loading ------------------------------------------------------------ */

async function loadBundle() {
  setState('loading');
  const t0 = performance.now();
  let man;
  try {
    const r = await fetch(BUNDLE + 'manifest.json', { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    man = await r.json();
  } catch (e) {
    throw new Error(`manifest.json: cannot load (${e.message})`);
  }
  const plan = planFrom(man);
  $('model-name').textContent = plan.name;
  stats.bytesTotal = plan.files.reduce((s, f) => s + f.size, 0);
  stats.layersTotal = plan.nLayers;
  showProgress();

  withCString(JSON.stringify(plan.config), (p, n) => {
    if (M._lmpw_begin(p, n, CTX) < 0) throw new Error(`config: ${wasmError()}`);
  });

  /* Fetch one file ahead while the previous one is handed to wasm. */
  let next = getVerified(plan.files[0]);
  for (let i = 0; i < plan.files.length; i++) {
    const f = plan.files[i];
    const got = await next;       /* a failed file stops everything here */
    if (i + 1 < plan.files.length) next = getVerified(plan.files[i + 1]);
    let rc;
    if (f.kind === 'tokenizer') {
      if (got.reserve) M._free(got.reserve);
      rc = withCString(f.file, (np) => M._lmpw_add_file(np, got.ptr, got.n));
    } else {
      rc = withCString(f.file, (np) => withCString(f.hash, (hz) => withCString(f.rawHash || '', (hp) =>
        M._lmpw_add_chunk(np, got.ptr, got.n, hz, f.rawSize ?? -1, hp, got.reserve))));
    }
    M._free(got.ptr);
    if (rc < 0) {
      next.catch(() => {});
      throw new Error(wasmError());
    }
    stats.bytesDone += f.size;
    stats.memTrace.push([f.file, M._lmpw_memory_bytes(), M._lmpw_heap_used()]);
    if (f.kind === 'chunk' && !f.head) stats.layersDone += f.last - f.first + 1;
    showProgress();
    await new Promise((r) => setTimeout(r, 0));   /* let the page paint */
  }
  if (M._lmpw_finish() < 0) throw new Error(wasmError());
  stats.memTrace.push(['finish', M._lmpw_memory_bytes(), M._lmpw_heap_used()]);
  stats.loadMs = performance.now() - t0;
  $('progress-text').textContent += ` · loaded in ${(stats.loadMs / 1000).toFixed(2)} s`;
  showMemory();
}

/* ---- generation ----------------------------------------------------------- */

function numberInput(id, lo, hi, fallback) {
  const v = Number($(id).value);
  if (!Number.isFinite(v)) return fallback;
  return Math.min(hi, Math.max(lo, v));
}

async function generate() {
  if (!ready) return;
  const prompt = $('prompt').value;
  const temperature = numberInput('temperature', 0, 100, 0.8);
  const topK = Math.floor(numberInput('top-k', 0, 1e9, 40));
  const topP = numberInput('top-p', 0, 1, 0.95);
  const minP = numberInput('min-p', 0, 1, 0.05);
  const repeatPenalty = numberInput('repeat-penalty', 0.01, 10, 1);
  const seed = Math.floor(numberInput('seed', 0, 2 ** 53, 0));
  const maxTokens = Math.floor(numberInput('max-tokens', 1, 1e6, 128));
  $('generate').disabled = true;
  $('stop').disabled = false;
  stopRequested = false;
  setState('generating');
  const out = $('output');
  out.textContent = prompt;
  let n = 0;
  const ids = [];
  const t0 = performance.now();
  let tFirst = 0;
  try {
    const rc = withCString(prompt, (p, len) =>
      M._lmpw_gen_start(p, len, temperature, topK, topP, minP, repeatPenalty, seed, maxTokens));
    if (rc < 0) throw new Error(wasmError());
    const lenPtr = M._malloc(4);
    try {
      for (;;) {
        if (stopRequested) break;
        const tok = M._lmpw_gen_next(lenPtr);
        if (tok === -2) throw new Error(wasmError());
        const textPtr = M._lmpw_gen_text();
        const piece = M.UTF8ToString(textPtr, M.HEAPU32[lenPtr >> 2]);
        if (piece) out.textContent += piece;
        if (tok < 0) break;           /* -1: finished (EOS, max tokens, context) */
        n++;
        ids.push(tok);
        if (n === 1) tFirst = performance.now();
        $('ntok').textContent = String(n);
        if (n > 1) $('toks').textContent = ((n - 1) / ((performance.now() - tFirst) / 1000)).toFixed(1);
        if (n % 4 === 0) showMemory();
        await new Promise((r) => setTimeout(r, 0));
      }
    } finally {
      M._free(lenPtr);
    }
    const tail = M._lmpw_gen_end();
    if (tail) out.textContent += M.UTF8ToString(tail);
  } catch (e) {
    fail(`generation: ${e.message}`);
    return;
  }
  window.lmpackLast = { text: out.textContent, tokens: n, ids, ms: performance.now() - t0 };
  showMemory();
  $('generate').disabled = false;
  $('stop').disabled = true;
  setState('ready');
}

/* Logits of every position of `ids` (flat Float32Array [n * vocab]), for
 * the native-vs-wasm comparison. Resets the generation state. */
function logits(ids) {
  const vocab = M._lmpw_vocab();
  const ip = M._malloc(ids.length * 4);
  const op = M._malloc(ids.length * vocab * 4);
  try {
    M.HEAP32.set(Int32Array.from(ids), ip >> 2);
    if (M._lmpw_logits(ip, ids.length, op) < 0) throw new Error(wasmError());
    return Array.from(M.HEAPF32.subarray(op >> 2, (op >> 2) + ids.length * vocab));
  } finally {
    M._free(ip);
    M._free(op);
  }
}

function tokenize(text, addBos) {
  return withCString(text, (p, len) => {
    const np = M._malloc(4);
    try {
      const ip = M._lmpw_tokenize(p, len, addBos ? 1 : 0, np);
      if (!ip) throw new Error(wasmError());
      const n = M.HEAPU32[np >> 2];
      const ids = Array.from(M.HEAP32.subarray(ip >> 2, (ip >> 2) + n));
      M._free(ip);
      return ids;
    } finally {
      M._free(np);
    }
  });
}

window.lmpackDebug = { logits, tokenize, memory: () => M._lmpw_memory_bytes(),
                       heapUsed: () => M._lmpw_heap_used(),
                       q4SelfTest: () => M._lmpw_q4_selftest() };

/* ---- start ---------------------------------------------------------------- */

async function main() {
  $('generate').addEventListener('click', generate);
  $('stop').addEventListener('click', () => { stopRequested = true; });
  try {
    M = await createLmpack();
  } catch (e) {
    fail(`runtime: cannot start WebAssembly (${e.message || e})`);
    return;
  }
  showMemory();
  await openCache();
  try {
    await loadBundle();
  } catch (e) {
    showProgress();
    fail(`loading stopped: ${e.message}`);
    return;
  }
  ready = true;
  $('generate').disabled = false;
  setState('ready');
}

main();

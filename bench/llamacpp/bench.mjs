// llama.cpp speed on a GGUF file, through node-llama-cpp's prebuilt
// binaries (CPU only), measured like bench/bench_perf.c measures lmpack:
//
//   node bench.mjs --nlc DIR --model F.gguf [--threads N] [--reps R]
//        [--decode N] [--prompt P]... [--ctx N] [--batch N] [--fa on|off|auto]
//        [--api raw|evaluate] [--mmap on|off] [--verbose]
//   node bench.mjs --nlc DIR --model F.gguf --greedy "1 2 3" --n N
//
// DIR is the folder where node-llama-cpp@3.21.1 is installed (it has
// node_modules/node-llama-cpp); bench/llamacpp/run.sh passes it.
//
// Same workload as bench_perf: prompt ids[i] = (i * 7919 + 13) % vocab;
// the model is loaded once and one context (default 2048 positions, f16
// KV cache: llama.cpp's default, and what lmpack's int4 runtime uses)
// serves every repetition (the sequence's KV cells are removed between
// repetitions). For each prompt length P (default 16, 128, 512), R
// repetitions of: the P-token prompt in one batch with logits for its last
// token, then a greedy pick (prefill time = time to first token = wall time
// from submitting the batch to having the token); for the first P only,
// --decode greedy single-token steps after it. One JSON line per
// measurement: medians, min and max over the repetitions of wall-clock and
// process-CPU rates (CPU = process.cpuUsage(), user + system of every
// thread of the process). Last line: peak RSS (VmHWM, whole node process)
// and node's own RSS before llama.cpp was loaded, for honesty: the node
// runtime costs ~40-50 MB that a C program would not; and how busy the
// rest of the machine was meanwhile ("other_cpu": average number of cores
// other processes kept busy during the timed runs, from /proc/stat minus
// this process's CPU time; on a shared 2-core VM anything above ~0.1
// makes the wall-clock figures pessimistic).
//
// API used (--api raw, the default): node-llama-cpp's internal binding
// objects, the thinnest layer over llama.cpp it has: context._ctx is the
// native AddonContext (initBatch / addToBatch / decodeBatch -> llama_decode
// on a worker thread / sampleToken), and a native AddonSampler with
// temperature 0 (greedy, argmax inside the addon). Per decode step that is
// one synchronous call and two awaited native calls; no token scheduler.
// --api evaluate uses the public LlamaContextSequence.evaluate() generator
// (temperature 0, yieldEogToken) instead, which adds node-llama-cpp's batch
// scheduler (one setImmediate hop per batch) and locks per token.
// Measured on the 2-core Zen 5 VM: both APIs decode at the same speed
// (the JS cost per token is lost in the noise), but node-llama-cpp attaches
// no ggml threadpool to its contexts, so this non-OpenMP build creates and
// joins its worker threads at every llama_decode: at 2 threads decode runs
// at ~42 tok/s against ~105 with a threadpool (llbench.c, as llama-bench).
// Use llbench's numbers for llama.cpp itself; these are node-llama-cpp's.
// Greedy mode prints {"greedy": [ids...]} (n new tokens after the prompt),
// for bench/llamacpp/check.sh.
//
// Never builds or downloads anything: getLlama({gpu: false, build:
// "never", skipDownload: true, usePrebuiltBinaries: true}).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

function usage(code) {
    (code ? process.stderr : process.stdout).write(
        "usage: node bench.mjs --nlc DIR --model F.gguf [--threads N] [--reps R] [--decode N]\n" +
        "       [--prompt P]... [--ctx N] [--batch N] [--fa on|off|auto] [--api raw|evaluate]\n" +
        "       [--mmap on|off] [--verbose]\n" +
        "   or: node bench.mjs --nlc DIR --model F.gguf --greedy \"ID ID ...\" --n N\n");
    process.exit(code);
}

const o = { threads: 1, reps: 3, decode: 128, prompts: [], ctx: 2048, batch: 512, fa: "auto",
            api: "raw", mmap: "on", verbose: false, n: 0 };
const av = process.argv.slice(2);
for (let i = 0; i < av.length; i++) {
    const a = av[i], v = () => { if (i + 1 >= av.length) usage(2); return av[++i]; };
    const int = (lo) => { const s = v(), x = Number(s);
        if (!Number.isInteger(x) || x < lo) { console.error(`bench.mjs: bad value for ${a}: ${s}`); process.exit(2); }
        return x; };
    if (a === "--nlc") o.nlc = v();
    else if (a === "--model") o.model = v();
    else if (a === "--threads") o.threads = int(1);
    else if (a === "--reps") o.reps = int(1);
    else if (a === "--decode") o.decode = int(0);
    else if (a === "--prompt") o.prompts.push(int(1));
    else if (a === "--ctx") o.ctx = int(16);
    else if (a === "--batch") o.batch = int(1);
    else if (a === "--fa") { o.fa = v(); if (!["on", "off", "auto"].includes(o.fa)) usage(2); }
    else if (a === "--api") { o.api = v(); if (o.api !== "raw" && o.api !== "evaluate") usage(2); }
    else if (a === "--mmap") { o.mmap = v(); if (o.mmap !== "on" && o.mmap !== "off") usage(2); }
    else if (a === "--verbose") o.verbose = true;
    else if (a === "--greedy") o.greedy = v().trim().split(/[\s,]+/).map(Number);
    else if (a === "--n") o.n = int(1);
    else if (a === "-h" || a === "--help") usage(0);
    else { console.error(`bench.mjs: unknown argument ${a}`); usage(2); }
}
if (!o.nlc || !o.model) usage(2);
if (o.prompts.length === 0) o.prompts = [16, 128, 512];

function statusKb(key) {
    const m = fs.readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) : NaN;
}
const rssNodeMb = statusKb("VmRSS") / 1024;

const nlcIndex = path.join(o.nlc, "node_modules", "node-llama-cpp", "dist", "index.js");
if (!fs.existsSync(nlcIndex)) { console.error(`bench.mjs: ${nlcIndex} not found (npm i -E node-llama-cpp@3.21.1 in ${o.nlc})`); process.exit(1); }
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(nlcIndex).href);

const logs = [];
const llama = await getLlama({
    gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, progressLogs: false,
    maxThreads: 0, logLevel: LlamaLogLevel.debug,
    logger: (level, msg) => { logs.push(msg); if (o.verbose) process.stderr.write(msg); },
});
const t0 = process.hrtime.bigint();
const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0, useMmap: o.mmap === "on" });
const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
const context = await model.createContext({
    contextSize: o.ctx, batchSize: o.batch, threads: { ideal: o.threads, min: o.threads },
    // "auto" is llama.cpp's own default (llama_context_default_params);
    // node-llama-cpp's default would be off
    flashAttention: o.fa === "auto" ? "auto" : o.fa === "on", sequences: 1,
});
const sequence = context.getSequence();
const vocab = model.fileInfo.metadata.llama?.vocab_size ??
    model.fileInfo.metadata.tokenizer.ggml.tokens.length;

// which ggml-cpu variant the backend loader picked (mapped into this process)
const maps = fs.readFileSync("/proc/self/maps", "utf8").split("\n")
    .map((l) => l.trim().split(/\s+/).slice(5).join(" ")).filter((p) => /libggml-cpu[^/]*\.so$/.test(p));
const cpuLib = [...new Set(maps)].map((p) => path.basename(p));
const repack = logs.filter((l) => /REPACK|repack/.test(l)).map((l) => l.trim());
console.log(JSON.stringify({
    model: o.model, threads: o.threads, reps: o.reps, load_ms: Number(loadMs.toFixed(1)),
    api: o.api, mmap: o.mmap, ctx: o.ctx, batch: o.batch, flash_attention: o.fa, vocab,
    llama_cpp_release: llama.llamaCppRelease?.release, build_type: llama.buildType,
    gpu: llama.gpu, cpu_backend: cpuLib, system_info: llama.systemInfo?.trim(),
    repack_logs: repack.slice(0, 4),
}));

const ctx = context._ctx;                 // native AddonContext
const seqId = sequence._sequenceId;    // its llama_seq_id
const sampler = new llama._bindings.AddonSampler(model._model);
sampler.applyConfig({ temperature: 0 }); // greedy: argmax in native code
ctx.setThreads(o.threads);

function clearKv() {
    if (!ctx.removeTokenCellsFromSequence(seqId, 0, -1)) throw new Error("KV cells not removed");
}
// One llama_decode of `toks` at positions pos.., logits for the last one;
// returns the greedy next token.
async function step(toks, pos) {
    ctx.initBatch(toks.length);
    const idx = ctx.addToBatch(seqId, pos, toks, Uint32Array.of(toks.length - 1));
    await ctx.decodeBatch();
    const t = await ctx.sampleToken(idx[0], sampler);
    if (t < 0) throw new Error("sampling failed");
    return t;
}

if (o.greedy) {
    clearKv();
    const out = [];
    let t = await step(Uint32Array.from(o.greedy), 0);
    for (let i = 0; i < o.n; i++) {
        out.push(t);
        if (i + 1 < o.n) t = await step(Uint32Array.of(t), o.greedy.length + i);
    }
    console.log(JSON.stringify({ greedy: out }));
    await context.dispose(); await model.dispose(); await llama.dispose();
    process.exit(0);
}

const maxP = Math.max(...o.prompts);
if (maxP + o.decode > o.ctx) { console.error(`bench.mjs: --ctx ${o.ctx} < ${maxP + o.decode}`); process.exit(2); }
if (maxP > o.batch) { console.error(`bench.mjs: --batch ${o.batch} < prompt ${maxP}`); process.exit(2); }
const ids = Uint32Array.from({ length: maxP + o.decode }, (_, i) => (i * 7919 + 13) % vocab);

// busy and total jiffies of the whole machine (first line of /proc/stat)
function machineJiffies() {
    const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] || 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return [total - idle, total];
}
const now = () => Number(process.hrtime.bigint()) / 1e9;
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const stat = (name, xs, scale = 1, digits = 2) => {
    const s = xs.map((x) => x * scale).sort((a, b) => a - b);
    return `"${name}": {"med": ${s[s.length >> 1].toFixed(digits)}, "min": ${s[0].toFixed(digits)}, "max": ${s[s.length - 1].toFixed(digits)}}`;
};

// public-API variant of one prompt + decode run (see header)
async function runEvaluate(P, dec) {
    await sequence.clearHistory();
    const w0 = now(), c0 = cpu();
    const gen = sequence.evaluate(Array.from(ids.subarray(0, P)), { temperature: 0, yieldEogToken: true });
    let r = await gen.next();
    const pw = now() - w0, pc = cpu() - c0;
    const w1 = now(), c1 = cpu();
    for (let i = 0; i < dec; i++) r = await gen.next();
    const dw = now() - w1, dc = cpu() - c1;
    await gen.return();
    void r;
    return [pw, pc, dw, dc];
}

async function runRaw(P, dec) {
    clearKv();
    const w0 = now(), c0 = cpu();
    let t = await step(ids.subarray(0, P), 0);
    const pw = now() - w0, pc = cpu() - c0;
    const w1 = now(), c1 = cpu();
    for (let i = 0; i < dec; i++) t = await step(Uint32Array.of(t), P + i);
    return [pw, pc, now() - w1, cpu() - c1];
}

const [busy0, total0] = machineJiffies(), cpuAll0 = cpu();
for (let k = 0; k < o.prompts.length; k++) {
    const P = o.prompts[k], dec = k === 0 ? o.decode : 0;
    const pw = [], pc = [], dw = [], dc = [];
    for (let r = 0; r < o.reps; r++) {
        const [a, b, c, d] = o.api === "raw" ? await runRaw(P, dec) : await runEvaluate(P, dec);
        pw.push(a); pc.push(b); dw.push(c); dc.push(d);
    }
    const inv = (xs, u) => xs.map((x) => u / x);
    let line = `{"prompt": ${P}, ${stat("prefill_tok_s", inv(pw, P))}, ${stat("prefill_tok_s_cpu", inv(pc, P * o.threads))}, ${stat("ttft_ms", pw, 1e3)}`;
    if (dec > 0)
        line += `, "decode_steps": ${dec}, ${stat("decode_tok_s", inv(dw, dec))}, ${stat("decode_tok_s_cpu", inv(dc, dec * o.threads))}`;
    console.log(line + "}");
}
const [busy1, total1] = machineJiffies(), cpuAll1 = cpu();
const ncpu = (fs.readFileSync("/proc/stat", "utf8").match(/^cpu\d+ /gm) || [1]).length;
const hz = 100; // USER_HZ (jiffies per second) on Linux x86_64
const span = (total1 - total0) / hz / ncpu; // wall seconds seen by /proc/stat
const other = span > 0 ? Math.max(0, ((busy1 - busy0) / hz - (cpuAll1 - cpuAll0)) / span) : 0;
console.log(JSON.stringify({ ctx: o.ctx, kv: "f16", peak_rss_mb: Number((statusKb("VmHWM") / 1024).toFixed(1)),
                             node_rss_before_llama_mb: Number(rssNodeMb.toFixed(1)),
                             other_cpu: Number(other.toFixed(2)), cores: ncpu }));
sampler.dispose();
await context.dispose(); await model.dispose(); await llama.dispose();

// Runs one exported .onnx model under ONNX Runtime (onnxruntime-node), checks its output against
// PyTorch's and times it; bench/compare_onnxruntime.py starts it once per (model, thread count).
//
// Usage: node bench/onnxruntime_run.mjs SPEC.json --threads K --repeat R --warmup W [--spin 0|1]
//            [--profile PREFIX]
// SPEC.json (written by compare_onnxruntime.py):
//   {"model": "m.onnx", "inputs": [{"name": "src", "file": "src.f32", "dims": [1, 197, 384]}],
//    "expected": {"file": "out.f32", "dims": [...]}, "tolerance": 1e-4}
// The .f32 files are raw little-endian float32, PyTorch's tensors in C order.
// Prints one JSON line: load_ms, forward_ms (every timed run), worst_abs_err, max_abs_ref, ok.
// Exits 1 when the output is off by more than tolerance * max(1, max |PyTorch output|).
import fs from 'node:fs';
import ort from 'onnxruntime-node';

function parseArgs(argv) {
  const args = {threads: 1, repeat: 7, warmup: 2, spin: 1, profile: null, spec: null};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (!flag.startsWith('--')) { args.spec = flag; continue; }
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--profile') args.profile = value;
    else if (flag in {'--threads': 1, '--repeat': 1, '--warmup': 1, '--spin': 1}) args[flag.slice(2)] = Number(value);
    else throw new Error(`unknown option ${flag}`);
  }
  if (!args.spec) throw new Error('missing SPEC.json');
  return args;
}

function readFloats(file, dims) {
  const bytes = fs.readFileSync(file);
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== 4 * count) throw new Error(`${file}: ${bytes.length} bytes, expected ${4 * count}`);
  // Copy into an aligned buffer: Buffer slices of the pool may start at any offset.
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}

const args = parseArgs(process.argv.slice(2));
const spec = JSON.parse(fs.readFileSync(args.spec, 'utf8'));

const options = {
  graphOptimizationLevel: 'all',
  intraOpNumThreads: args.threads,
  // The graph is one chain of layers: no operators to run side by side.
  executionMode: 'sequential',
  interOpNumThreads: 1,
  // Spinning (ORT's default) keeps idle pool threads busy waiting: fastest on idle cores, in the
  // way of whatever else runs on shared ones.
  extra: {session: {intra_op: {allow_spinning: String(args.spin)}}},
};
if (args.profile) Object.assign(options, {enableProfiling: true, profileFilePrefix: args.profile});

const loadStart = process.hrtime.bigint();
const session = await ort.InferenceSession.create(spec.model, options);
const loadMs = Number(process.hrtime.bigint() - loadStart) / 1e6;

const feeds = {};
for (const input of spec.inputs) {
  feeds[input.name] = new ort.Tensor('float32', readFloats(input.file, input.dims), input.dims);
}
const outputName = session.outputNames[0];

const times = [];
let output = null;
for (let i = 0; i < args.warmup + args.repeat; i++) {
  const start = process.hrtime.bigint();
  const result = await session.run(feeds);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (i >= args.warmup) times.push(ms);
  output = result[outputName];
}
if (args.profile) session.endProfiling();

const expected = readFloats(spec.expected.file, spec.expected.dims);
if (output.data.length !== expected.length) {
  throw new Error(`output has ${output.data.length} values, PyTorch's ${expected.length}`);
}
let worst = 0;
let maxRef = 0;
for (let i = 0; i < expected.length; i++) {
  worst = Math.max(worst, Math.abs(output.data[i] - expected[i]));
  maxRef = Math.max(maxRef, Math.abs(expected[i]));
}
const ok = worst <= spec.tolerance * Math.max(1, maxRef);
console.log(JSON.stringify({load_ms: loadMs, forward_ms: times, worst_abs_err: worst,
                            max_abs_ref: maxRef, ok}));
process.exitCode = ok ? 0 : 1;

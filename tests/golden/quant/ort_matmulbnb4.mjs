// The independent oracle for ringtune's NF4 packing and dequantization: onnxruntime's contrib
// operator MatMulBnb4 (domain com.microsoft; quant_type 1 = NF4, bitsandbytes's packing: blocks
// over the row-major [N, K] weight, first element in the high nibble, one float32 absmax per
// block), which computes Y = A · dequant(B)ᵀ. A one-node ONNX graph is written here as protobuf
// bytes by hand (no onnx package needed), fed ringtune's packed weights and block scales, and its
// output recorded next to them.
//
// Regenerate (needs network once for npm; onnxruntime-node's install script only fetches GPU
// libraries, so skip it):
//   npm install --ignore-scripts onnxruntime-node@1.20.1        (in some scratch directory)
//   RINGTUNE_WRITE_ORT_INPUT=/tmp/ort_input.json build/ringtune_tests --gtest_also_run_disabled_tests \
//     --gtest_filter=Quant.DISABLED_WriteOnnxruntimeInput
//   NODE_PATH=<scratch>/node_modules node tests/golden/quant/ort_matmulbnb4.mjs /tmp/ort_input.json \
//     > tests/golden/quant/ort_matmulbnb4.json
import { createRequire } from "module";
import fs from "fs";

const require = createRequire(import.meta.url);
const ort = require("onnxruntime-node");  // found through NODE_PATH

// --- protobuf wire format: varints and length-delimited fields
function varint(n) {
  const out = [];
  let v = BigInt(n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}
const intField = (field, n) => [...varint((field << 3) | 0), ...varint(n)];
const bytesField = (field, bytes) => [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes];
const strField = (field, s) => bytesField(field, [...Buffer.from(s, "utf8")]);

// --- ONNX messages (onnx.proto field numbers)
const FLOAT = 1, UINT8 = 2, ATTR_INT = 2;
function valueInfo(name, elemType, dims) {
  const shape = dims.flatMap((d) => bytesField(1, intField(1, d)));       // TensorShapeProto.dim.dim_value
  const tensorType = [...intField(1, elemType), ...bytesField(2, shape)];   // TypeProto.Tensor
  return [...strField(1, name), ...bytesField(2, bytesField(1, tensorType))];
}
const attrInt = (name, v) => [...strField(1, name), ...intField(3, v), ...intField(20, ATTR_INT)];

function model({ M, N, K, block }) {
  const blocks = Math.ceil((N * K) / block);
  const node = [
    ...strField(1, "A"), ...strField(1, "B"), ...strField(1, "absmax"), ...strField(2, "Y"),
    ...strField(3, "bnb4"), ...strField(4, "MatMulBnb4"), ...strField(7, "com.microsoft"),
    ...bytesField(5, attrInt("K", K)), ...bytesField(5, attrInt("N", N)),
    ...bytesField(5, attrInt("block_size", block)), ...bytesField(5, attrInt("quant_type", 1)),
  ];
  const graph = [
    ...bytesField(1, node), ...strField(2, "ringtune_nf4_oracle"),
    ...bytesField(11, valueInfo("A", FLOAT, [M, K])),
    ...bytesField(11, valueInfo("B", UINT8, [Math.floor((N * K + 1) / 2)])),
    ...bytesField(11, valueInfo("absmax", FLOAT, [blocks])),
    ...bytesField(12, valueInfo("Y", FLOAT, [M, N])),
  ];
  const opset = (domain, version) => bytesField(8, [...strField(1, domain), ...intField(2, version)]);
  return Uint8Array.from([...intField(1, 8), ...opset("", 17), ...opset("com.microsoft", 1), ...bytesField(7, graph)]);
}

const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const session = await ort.InferenceSession.create(model(input));
const feeds = {
  A: new ort.Tensor("float32", Float32Array.from(input.A), [input.M, input.K]),
  B: new ort.Tensor("uint8", Uint8Array.from(input.packed), [input.packed.length]),
  absmax: new ort.Tensor("float32", Float32Array.from(input.absmax), [input.absmax.length]),
};
const { Y } = await session.run(feeds);
const pkg = JSON.parse(fs.readFileSync(require.resolve("onnxruntime-node/package.json"), "utf8"));
process.stdout.write(JSON.stringify({ generator: `onnxruntime-node ${pkg.version} MatMulBnb4 (CPU)`, ...input,
                                      Y: Array.from(Y.data) }) + "\n");

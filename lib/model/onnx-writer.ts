// A small protobuf encoder for the subset of ONNX's ModelProto that the converter emits.
// Field numbers and enum values are those of onnx/onnx.proto (IR version 8):
//   ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8
//   OperatorSetIdProto: domain 1, version 2
//   GraphProto: node 1, name 2, initializer 5, input 11, output 12
//   NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, domain 7
//   AttributeProto: name 1, f 2, i 3, s 4, t 5, ints 8, type 20 (FLOAT 1, INT 2, STRING 3, TENSOR 4, INTS 7)
//   TensorProto: dims 1, data_type 2, name 8, raw_data 9, external_data 13, data_location 14 (EXTERNAL 1)
//   StringStringEntryProto: key 1, value 2
//   ValueInfoProto: name 1, type 2; TypeProto: tensor_type 1; TypeProto.Tensor: elem_type 1, shape 2
//   TensorShapeProto: dim 1; Dimension: dim_value 1, dim_param 2
// Wire format (https://protobuf.dev/programming-guides/encoding/): tag = field << 3 | wire type,
// varint = 0, length-delimited = 2, 32-bit = 5; negative int64 varints take 10 bytes.

export const DataType = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10 } as const;

export interface TensorDef {
  name: string;
  dataType: number;
  dims: number[];
  raw?: Uint8Array;                                                   // inline data
  external?: { location: string; offset: number; length: number };   // or a slice of a data file
}

export type AttributeValue = { f: number } | { i: number } | { s: string } | { ints: number[] } | { t: TensorDef };

export interface NodeDef {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  domain?: string;
  attributes?: Record<string, AttributeValue>;
}

interface ValueInfo {
  name: string;
  elemType: number;
  shape: (number | string)[];   // a string is a symbolic (dynamic) dimension
}

export interface ModelDef {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  graph: { name: string; nodes: NodeDef[]; initializers: TensorDef[]; inputs: ValueInfo[]; outputs: ValueInfo[] };
}

class Message {
  private chunks: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.size += bytes.length;
  }

  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.push(Uint8Array.from(out));
  }

  int(field: number, value: number): this {
    this.varint((field << 3) | 0);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.varint((field << 3) | 5);
    const b = Buffer.alloc(4);
    b.writeFloatLE(value);
    this.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.varint((field << 3) | 2);
    this.varint(value.length);
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  message(field: number, value: Message): this {
    return this.bytes(field, value.finish());
  }

  finish(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }
}

function encodeTensor(t: TensorDef): Message {
  const m = new Message();
  for (const d of t.dims) m.int(1, d);
  m.int(2, t.dataType).string(8, t.name);
  if (t.raw !== undefined) m.bytes(9, t.raw);
  if (t.external !== undefined) {
    const entries: [string, string][] = [
      ['location', t.external.location], ['offset', String(t.external.offset)], ['length', String(t.external.length)],
    ];
    for (const [key, value] of entries) m.message(13, new Message().string(1, key).string(2, value));
    m.int(14, 1);
  }
  return m;
}

function encodeAttribute(name: string, value: AttributeValue): Message {
  const m = new Message().string(1, name);
  if ('f' in value) return m.float(2, value.f).int(20, 1);
  if ('i' in value) return m.int(3, value.i).int(20, 2);
  if ('s' in value) return m.string(4, value.s).int(20, 3);
  if ('t' in value) return m.message(5, encodeTensor(value.t)).int(20, 4);
  for (const v of value.ints) m.int(8, v);
  return m.int(20, 7);
}

function encodeNode(n: NodeDef): Message {
  const m = new Message();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  if (n.name !== undefined) m.string(3, n.name);
  m.string(4, n.opType);
  for (const [name, value] of Object.entries(n.attributes ?? {})) m.message(5, encodeAttribute(name, value));
  if (n.domain !== undefined && n.domain !== '') m.string(7, n.domain);
  return m;
}

function encodeValueInfo(v: ValueInfo): Message {
  const shape = new Message();
  for (const d of v.shape) shape.message(1, typeof d === 'number' ? new Message().int(1, d) : new Message().string(2, d));
  const tensorType = new Message().int(1, v.elemType).message(2, shape);
  return new Message().string(1, v.name).message(2, new Message().message(1, tensorType));
}

export function encodeModel(model: ModelDef): Buffer {
  const g = new Message();
  for (const n of model.graph.nodes) g.message(1, encodeNode(n));
  g.string(2, model.graph.name);
  for (const t of model.graph.initializers) g.message(5, encodeTensor(t));
  for (const v of model.graph.inputs) g.message(11, encodeValueInfo(v));
  for (const v of model.graph.outputs) g.message(12, encodeValueInfo(v));
  const m = new Message().int(1, model.irVersion).string(2, model.producerName).string(3, model.producerVersion);
  m.message(7, g);
  for (const o of model.opsets) m.message(8, new Message().string(1, o.domain).int(2, o.version));
  return m.finish();
}

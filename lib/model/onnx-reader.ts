// Reads just enough of an ONNX ModelProto to list the external data files its graph's initializers
// name (field numbers as in onnx-writer.ts: ModelProto.graph 7, GraphProto.initializer 5,
// TensorProto.external_data 13 and data_location 14, StringStringEntryProto key 1, value 2).
// The file is read a window at a time and every other field is skipped by its length: a graph
// holding its weights inline (raw_data, 440 MB at full size) is never read whole.
import * as fs from 'fs';

const WINDOW = 64 * 1024;
// A key or value of external_data is a file name or a number: anything longer is not ONNX.
const MAX_TEXT = 4096;

class FileReader {
  private readonly window = Buffer.alloc(WINDOW);
  private start = 0;
  private end = 0;

  constructor(private readonly fd: number, private readonly file: string) {}

  fail(why: string, at: number): never {
    throw new Error(`${this.file} is not a valid ONNX graph: ${why} at byte ${at}`);
  }

  private byte(at: number): number {
    if (at < this.start || at >= this.end) {
      this.start = at;
      this.end = at + fs.readSync(this.fd, this.window, 0, WINDOW, at);
      if (this.end === at) this.fail('the file ends', at);  // shortened while read
    }
    return this.window[at - this.start];
  }

  // A varint at `at` that must end before `end`: [value, position after it]. Values past 2^53 lose
  // precision, which only matters for lengths, and those are checked against the file.
  private varint(at: number, end: number): [number, number] {
    let value = 0;
    for (let i = 0; i < 10 && at < end; i++) {
      const b = this.byte(at++);
      value += (b & 0x7f) * 2 ** (7 * i);
      if (b < 0x80) return [value, at];
    }
    return this.fail('a truncated or overlong varint', at);
  }

  /** Calls `visit` for each field of the message in [start, end): a varint's value, or a length-delimited field's range. */
  fields(start: number, end: number, visit: (field: number, value: number | { start: number; end: number }) => void): void {
    let at = start;
    while (at < end) {
      const [tag, next] = this.varint(at, end);
      at = next;
      const field = Math.floor(tag / 8);
      switch (tag % 8) {
        case 0: {
          const [value, after] = this.varint(at, end);
          at = after;
          visit(field, value);
          break;
        }
        case 1: at += 8; break;
        case 5: at += 4; break;
        case 2: {
          const [length, after] = this.varint(at, end);
          if (length > end - after) this.fail(`field ${field} of ${length} bytes runs past its message`, after);
          at = after + length;
          visit(field, { start: after, end: at });
          break;
        }
        default: this.fail(`wire type ${tag % 8}`, at);
      }
    }
    if (at > end) this.fail('a field runs past its message', end);
  }

  text(range: { start: number; end: number }): string {
    const length = range.end - range.start;
    if (length > MAX_TEXT) this.fail(`a string of ${length} bytes in external_data`, range.start);
    const bytes = Buffer.alloc(length);
    fs.readSync(this.fd, bytes, 0, length, range.start);
    return bytes.toString('utf8');
  }
}

/** The `location`s (as written, each once) of the graph initializers an ONNX file keeps in external data files. */
export function externalDataLocations(file: string): string[] {
  const fd = fs.openSync(file, 'r');
  try {
    const r = new FileReader(fd, file);
    const locations = new Set<string>();
    r.fields(0, fs.fstatSync(fd).size, (field, graph) => {
      if (field !== 7 || typeof graph === 'number') return;
      r.fields(graph.start, graph.end, (field, tensor) => {
        if (field !== 5 || typeof tensor === 'number') return;
        let location: string | undefined;
        let external = false;  // external_data counts only with data_location EXTERNAL, as in ONNX Runtime
        r.fields(tensor.start, tensor.end, (field, value) => {
          if (field === 14) external = value === 1;
          if (field !== 13 || typeof value === 'number') return;
          let key: string | undefined;
          let text: string | undefined;
          r.fields(value.start, value.end, (field, s) => {
            if (typeof s === 'number') return;
            if (field === 1) key = r.text(s);
            if (field === 2) text = r.text(s);
          });
          if (key === 'location') location = text;
        });
        if (external && location !== undefined) locations.add(location);
      });
    });
    return [...locations];
  } finally {
    fs.closeSync(fd);
  }
}

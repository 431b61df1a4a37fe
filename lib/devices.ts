// What backends exist on this machine, and parsing of the `device` option.
import { loadAddon, NativeCudaDevice } from './native';

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

export interface DeviceReport {
  cpu: { simd: 'avx512' | 'avx2' | 'scalar'; threads: number };
  /** CUDA devices usable here (empty without a GPU, a driver, or a CUDA build). */
  cuda: NativeCudaDevice[];
  /** Why `cuda` is empty, or null when it is not. */
  cudaUnavailableReason: string | null;
}

export function devices(): DeviceReport {
  const info = loadAddon().info();
  return {
    cpu: { simd: info.simd, threads: info.threads },
    cuda: info.cudaDevices,
    cudaUnavailableReason: info.cudaUnavailableReason,
  };
}

/** -1 for the CPU, else the CUDA device index named (not checked against this machine). */
export function parseDevice(value: unknown, name = 'options.device'): number {
  if (value === undefined || value === 'cpu') return -1;
  const match = typeof value === 'string' ? /^cuda(?::(\d+))?$/.exec(value) : null;
  if (match === null) {
    throw new TypeError(`${name} must be 'cpu', 'cuda' or 'cuda:<index>', got ${JSON.stringify(value)}`);
  }
  return match[1] === undefined ? 0 : Number(match[1]);
}

/** -1 for the CPU, else a CUDA device index that exists here (otherwise a clear Error). */
export function resolveDevice(value: unknown, name = 'options.device'): number {
  const index = parseDevice(value, name);
  if (index < 0) return -1;
  const report = devices();
  if (report.cuda.length === 0) {
    throw new Error(`${name} is '${value}' but no CUDA device is available: ${report.cudaUnavailableReason}`);
  }
  if (!report.cuda.some((d) => d.index === index)) {
    throw new RangeError(`${name} is '${value}' but this machine has CUDA devices 0..${report.cuda.length - 1}`);
  }
  return index;
}

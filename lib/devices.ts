// What backends exist on this machine, and parsing of the `device` option.
import { loadAddon } from './native';
import { describeValue } from './validate';

/** A CUDA device: the first ('cuda', i.e. 'cuda:0') or another one ('cuda:1'). */
export type CudaDeviceName = 'cuda' | `cuda:${number}`;

/** Where work runs: the CPU or a CUDA device. */
export type Device = 'cpu' | CudaDeviceName;

/** One CUDA device, as `devices().cuda` lists it. */
export interface CudaDevice {
  /** The index that `device: 'cuda:<index>'` (or CudaMatrix's `device`) names. */
  index: number;
  /** The GPU's name, e.g. 'NVIDIA H100 80GB HBM3'. */
  name: string;
  /** Its memory, in bytes. */
  totalMemoryBytes: number;
  /** 'major.minor', e.g. '9.0'. */
  computeCapability: string;
  /** Streaming multiprocessors. */
  multiprocessors: number;
}

/** What `devices()` finds on this machine. */
export interface DeviceReport {
  /**
   * The SIMD level the CPU kernels use (chosen at run time; `CAMEMBED_SIMD=avx2` or `scalar` forces
   * a lower one) and the threads they use by default: the CPUs this process may run on (its affinity,
   * as `os.availableParallelism()`; a container's cpuset or `taskset` lowers it).
   */
  cpu: { simd: 'avx512' | 'avx2' | 'scalar'; threads: number };
  /** CUDA devices usable here (empty without a GPU, a driver, or a CUDA build). */
  cuda: CudaDevice[];
  /** Why `cuda` is empty, or null when it is not. */
  cudaUnavailableReason: string | null;
}

/** The CPU's SIMD level and threads, and the CUDA devices usable here (or why there are none). */
export function devices(): DeviceReport {
  const info = loadAddon().info();
  return {
    cpu: { simd: info.simd, threads: info.threads },
    cuda: info.cudaDevices,
    cudaUnavailableReason: info.cudaUnavailableReason,
  };
}

/** CUDA numbers devices with a C int. */
const MAX_CUDA_INDEX = 2 ** 31 - 1;

/** -1 for the CPU, else the CUDA device index named (not checked against this machine). */
export function parseDevice(value: unknown, name = 'options.device'): number {
  if (value === undefined || value === 'cpu') return -1;
  const match = typeof value === 'string' ? /^cuda(?::(\d+))?$/.exec(value) : null;
  if (match === null) {
    throw new TypeError(`${name} must be 'cpu', 'cuda' or 'cuda:<index>', got ${describeValue(value)}`);
  }
  if (match[1] === undefined) return 0;
  const index = Number(match[1]);
  if (index > MAX_CUDA_INDEX) throw new RangeError(`${name} is ${describeValue(value)}, past any CUDA device index (at most ${MAX_CUDA_INDEX})`);
  // One name per device, as PyTorch's device strings: 'cuda:00' is refused rather than taken as 'cuda:0'.
  if (String(index) !== match[1]) throw new TypeError(`${name} must be written 'cuda:${index}', got ${describeValue(value)}`);
  return index;
}

/**
 * The device index (-1: the CPU) for ONNX Runtime's execution provider. camembed's own CUDA build
 * knows which devices exist: a missing one is then a clear error before onnxruntime tries (and logs)
 * anything. Built without CUDA it cannot tell, and onnxruntime's CUDA provider (which the encoder
 * needs, not camembed's kernels) decides.
 */
export function onnxRuntimeDevice(value: unknown, name = 'options.device'): number {
  return loadAddon().info().cudaCompiledIn ? resolveDevice(value, name) : parseDevice(value, name);
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

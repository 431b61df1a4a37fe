// Loads the compiled addon (build/Release/camembed.node, or the file named by the environment
// variable CAMEMBED_ADDON: the tests load an addon built with the CUDA emulator that way). A
// missing or broken build is a clear error that says how to rebuild, thrown when a native
// function is first needed.
import * as path from 'path';
import type { CudaDevice } from './devices';

interface NativeInfo {
  simd: 'avx512' | 'avx2' | 'scalar';
  threads: number;
  cudaCompiledIn: boolean;
  cudaDevices: CudaDevice[];
  cudaUnavailableReason: string | null;
}

export interface NativePoolArgs {
  hidden: Float32Array | Uint16Array;
  hiddenType: 'float32' | 'float16';
  mask: BigInt64Array | Int32Array | Uint8Array;
  maskType: 'int64' | 'int32' | 'uint8';
  batch: number;
  seq: number;
  hiddenSize: number;
  normalize: boolean;
  out: Float32Array;
  threads: number;  // 0 = every CPU the process may run on
  device: number;   // -1 = CPU, else the CUDA device index
}

/** Rows [0, numRows) of `rows`; ties between equal scores go to the lower id (default: row number). */
export interface NativeTopKSegment {
  rows: Float32Array | Uint16Array;
  numRows: number;
  ids?: BigInt64Array;
}

export interface NativeTopKArgs {
  queries: Float32Array;
  numQueries: number;
  /** The database: these segments one after another (result indices count across them). */
  segments: NativeTopKSegment[];
  databaseType: 'float32' | 'float16';
  dim: number;
  k: number;
  normalized: boolean;
  outIndices: Int32Array;
  outScores: Float32Array;
  threads: number;
}

export interface NativeAddon {
  meanPoolNormalize(args: NativePoolArgs, async: false): undefined;
  meanPoolNormalize(args: NativePoolArgs, async: true): Promise<void>;
  cosineTopK(args: NativeTopKArgs, async: false): undefined;
  cosineTopK(args: NativeTopKArgs, async: true): Promise<void>;
  float32ToFloat16(args: { input: Float32Array; output: Uint16Array }): undefined;
  unitRows(args: { input: Float32Array; output: Float32Array | Uint16Array; dim: number }): number;
  info(): NativeInfo;
  /** The SIMD level the CPU kernels run (info().simd, without its CUDA query). */
  simd: NativeInfo['simd'];
  /** V8's major.minor version in the Node.js headers it was built with. */
  v8Version: string;
  /** An exclusive flock on `fd`, as Python's filelock takes: true once held, false while another holds it. */
  tryLockFile(fd: number): boolean;
  [binding: string]: unknown;
}

export const addonPath = process.env.CAMEMBED_ADDON
  ? path.resolve(process.env.CAMEMBED_ADDON)
  : path.resolve(__dirname, '..', 'build', 'Release', 'camembed.node');

let addon: NativeAddon | undefined;

// npm 12 skips (and npm 11.16+ questions) install scripts a project has not allowed, `npm rebuild` included.
const HOW_TO_BUILD =
  "'npm rebuild camembed' in the project that installed it, once its package.json allows camembed's install script " +
  "(npm 11.16+: 'npm install-scripts approve camembed'; see camembed's README, Install) " +
  "('npm run build:native' in camembed's own repository)";

export function loadAddon(): NativeAddon {
  if (addon === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      addon = require(addonPath) as NativeAddon;
    } catch (err) {
      throw new Error(
        `camembed: cannot load the native addon at ${addonPath} (${(err as Error).message}). ` +
          `Build it with ${HOW_TO_BUILD}; that needs CMake >= 3.18 and a C++20 compiler.`,
      );
    }
    // The addon uses V8's API (native/addon/common.h), whose ABI changes between Node.js majors.
    const running = process.versions.v8.split('.').slice(0, 2).join('.');
    if (addon.v8Version !== running) {
      const built = addon.v8Version;
      addon = undefined;
      throw new Error(
        `camembed: the native addon at ${addonPath} was built for another Node.js (V8 ${built ?? 'unrecorded: an older camembed'}; Node.js ` +
          `${process.version} runs V8 ${running}). Rebuild it with ${HOW_TO_BUILD}.`,
      );
    }
    // The addon forces 'avx2' or 'scalar' ('avx512' is the best level, its default): any other value, a
    // typo such as 'AVX2', would leave the best level in use unseen, and so would a level this CPU
    // lacks (the addon then runs the best it has).
    const forced = process.env.CAMEMBED_SIMD;
    const levels = ['scalar', 'avx2', 'avx512'];
    if (forced !== undefined && !levels.includes(forced)) {
      process.emitWarning(`CAMEMBED_SIMD=${JSON.stringify(forced)} is not avx512, avx2 or scalar: ignored (devices().cpu.simd says the level in use)`);
    } else if (forced !== undefined && levels.indexOf(forced) > levels.indexOf(addon.simd)) {
      process.emitWarning(`CAMEMBED_SIMD=${forced}: this CPU lacks ${forced}; the kernels run ${addon.simd}, the best it has`);
    }
  }
  return addon;
}

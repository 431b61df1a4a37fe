// An ONNX Runtime session in a worker thread: onnxruntime-node's session.run infers on the thread that calls it
// (in a setImmediate), which would hold the event loop for a whole batch (2.7 s for 32 passages at CamemBERT-base
// size, bench/RESULTS-encoder.md). The Encoder talks to it through OnnxWorker, requests answered in turn; this same
// file, run as the worker (workerData.onnxWorker), owns the session. Tensors cross by transfer, not copied.
// It also tokenizes the texts too long to tokenize on the event loop (a word of a million characters: seconds).
import * as fs from 'fs';
import * as path from 'path';
import { isMainThread, parentPort, TransferListItem, Worker, workerData } from 'worker_threads';
import * as ort from 'onnxruntime-node';
import { SentenceTokenizer } from './tokenizer';

/** A tensor as it crosses threads: its values, ONNX type and shape. */
export interface WorkerTensor {
  type: ort.Tensor.Type;
  data: Int32Array | BigInt64Array | Float32Array | Uint16Array;
  dims: readonly number[];
}

/** The session's inputs and outputs, as ort.InferenceSession describes them. */
interface SessionFacts {
  inputNames: readonly string[];
  outputNames: readonly string[];
  inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
}

type Request = { kind: 'run'; feeds: Record<string, WorkerTensor>; output: string } | { kind: 'tokenize'; text: string } | { kind: 'release' };

/** What the worker needs: the session's graph and options, the tokenizer's folder and length. */
interface WorkerSetup {
  onnxPath: string;
  options: ort.InferenceSession.SessionOptions;
  tokenizer: { dir: string; maxLength: number };
}
/**
 * A failure: the error as structured clone carries it (its class if a built-in one, message, the worker's stack, cause),
 * with what the clone drops, its name (a subclass's) and code.
 */
type Reply = { ok: true; value?: unknown } | { ok: false; error: Error; name: string; code: string | number | undefined };

/**
 * The compiled worker, `compiled`: a worker thread runs JavaScript only, so also when this file runs as its TypeScript
 * `source` (under ts-jest). `npm test` compiles dist first; `npx jest` alone would run a worker older than its source,
 * which is refused instead.
 */
export function workerScript(source = __filename, compiled = path.resolve(__dirname, '..', 'dist', 'onnx-worker.js')): string {
  if (path.extname(source) === '.ts') {
    const built = fs.statSync(compiled, { throwIfNoEntry: false });
    if (built === undefined || built.mtimeMs < fs.statSync(source).mtimeMs) {
      throw new Error(`${compiled} is ${built === undefined ? 'missing' : `older than ${source}`}: run \`npm run build:ts\` (the worker thread runs it)`);
    }
  }
  return compiled;
}

/**
 * The error of a failed reply, thrown on this thread: its class, name and code; its stack this thread's path to the
 * request (the caller's encode()), the worker's error, with its stack there, as `cause`.
 */
function replyError({ error, name, code }: Extract<Reply, { ok: false }>): Error {
  const rebuilt = new (error.constructor as ErrorConstructor)(error.message, { cause: error });
  rebuilt.name = name;
  if (code !== undefined) (rebuilt as NodeJS.ErrnoException).code = code as string;
  Error.captureStackTrace(rebuilt, replyError);  // again, for the header to show the name
  return rebuilt;
}

/** A reply's value, or its error thrown. */
function valueOf(reply: Reply): unknown {
  if (!reply.ok) throw replyError(reply);
  return reply.value;
}

/** The main thread's handle on a session in a worker: load, run, tokenize and release, answered in turn. */
export class OnnxWorker {
  /** The requests not answered yet, oldest first. */
  private readonly pending: { resolve: (reply: Reply) => void; reject: (err: Error) => void }[] = [];
  /** What the session takes and gives, set once it is created. */
  private facts!: SessionFacts;
  /** Why the thread has ended, once it has: later requests fail with it instead of waiting for ever. */
  private stopped: Error | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (reply: Reply) => this.settle(null, reply));
    worker.on('error', (err) => this.settle(err));
    worker.on('exit', (code) => {
      this.stopped = new Error(`the ONNX Runtime worker thread stopped (exit code ${code})`);
      this.settle(this.stopped);
    });
  }

  get inputNames(): readonly string[] { return this.facts.inputNames; }
  get outputNames(): readonly string[] { return this.facts.outputNames; }
  get inputMetadata(): readonly ort.InferenceSession.ValueMetadata[] { return this.facts.inputMetadata; }
  get outputMetadata(): readonly ort.InferenceSession.ValueMetadata[] { return this.facts.outputMetadata; }

  /** Starts a worker and creates the session there (the tokenizer once needed); rejects with ONNX Runtime's error. */
  static async create(setup: WorkerSetup): Promise<OnnxWorker> {
    const session = new OnnxWorker(new Worker(workerScript(), { workerData: { onnxWorker: setup } }));
    try {
      session.facts = valueOf(await session.answer()) as SessionFacts;  // the worker's first message
    } catch (err) {
      await session.worker.terminate();
      throw err;
    }
    return session;
  }

  /** Runs the graph on `feeds` (their buffers move to the worker) and gives the output named `output`. */
  run(feeds: Record<string, WorkerTensor>, output: string): Promise<WorkerTensor> {
    return this.request({ kind: 'run', feeds, output }, Object.values(feeds).map((t) => t.data.buffer as ArrayBuffer)) as Promise<WorkerTensor>;
  }

  /** SentenceTokenizer.encode(text), in the worker. */
  tokenize(text: string): Promise<number[]> {
    return this.request({ kind: 'tokenize', text }, []) as Promise<number[]>;
  }

  /** Releases the session, then the thread ends (a thread that has stopped has nothing to release). */
  async release(): Promise<void> {
    if (this.stopped === null) await this.request({ kind: 'release' }, []);
    await this.worker.terminate();
  }

  private async request(request: Request, transfer: TransferListItem[]): Promise<unknown> {
    if (this.stopped !== null) throw this.stopped;
    const answer = this.answer();
    this.worker.postMessage(request, transfer);
    return valueOf(await answer);  // awaited here: a failure's stack goes back through the caller's awaits
  }

  /** The reply to the request about to be posted; rejects when the thread fails or stops. */
  private answer(): Promise<Reply> {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.worker.ref();  // an answer awaited keeps the process alive
    });
  }

  /** The oldest request gets `reply`; or every request fails with `err`. */
  private settle(err: Error | null, reply?: Reply): void {
    const settled = err === null ? this.pending.splice(0, 1) : this.pending.splice(0);
    if (this.pending.length === 0) this.worker.unref();  // idle, it does not keep the process alive (an Encoder never disposed of did not)
    for (const { resolve, reject } of settled) {
      if (err === null) resolve(reply!);
      else reject(err);
    }
  }
}

/** The worker side: creates the session, then answers each request with a Reply, one after the other. */
async function serve(port: NonNullable<typeof parentPort>, { onnxPath, options, tokenizer }: WorkerSetup) {
  const fail = (err: unknown) => {
    const error = err instanceof Error ? err : new Error(String(err));
    const { code } = error as { code?: unknown };
    port.postMessage({ ok: false, error, name: error.name, code: typeof code === 'string' || typeof code === 'number' ? code : undefined } satisfies Reply);
  };
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(onnxPath, options);
  } catch (err) {
    fail(err);
    return;
  }
  const { inputNames, outputNames, inputMetadata, outputMetadata } = session;
  port.postMessage({ ok: true, value: { inputNames, outputNames, inputMetadata, outputMetadata } } satisfies Reply);
  let sentenceTokenizer: SentenceTokenizer | null = null;  // loaded for the first long text
  const answer = async (request: Request) => {
    try {
      if (request.kind === 'release') {
        await session.release();
        port.postMessage({ ok: true } satisfies Reply);
        return;
      }
      if (request.kind === 'tokenize') {
        sentenceTokenizer ??= SentenceTokenizer.load(tokenizer.dir, { maxLength: tokenizer.maxLength });
        port.postMessage({ ok: true, value: sentenceTokenizer.encode(request.text) } satisfies Reply);
        return;
      }
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(request.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
      const hidden = (await session.run(feeds, [request.output]))[request.output];
      // float16 as its bits (a Float16Array, where the runtime has one, may not cross threads), which the kernels take.
      const data = hidden.type === 'float16' ? new Uint16Array((hidden.data as Uint16Array).buffer, (hidden.data as Uint16Array).byteOffset,
        (hidden.data as Uint16Array).length) : hidden.data as WorkerTensor['data'];
      const value: WorkerTensor = { type: hidden.type, data, dims: hidden.dims };
      port.postMessage({ ok: true, value } satisfies Reply, [data.buffer as ArrayBuffer]);
    } catch (err) {
      fail(err);
    }
  };
  // In turn: a run awaits ONNX Runtime's setImmediate, and a request coming meanwhile would be answered first.
  let answered = Promise.resolve();
  port.on('message', (request: Request) => {
    answered = answered.then(() => answer(request));
  });
}

if (!isMainThread && parentPort !== null && workerData?.onnxWorker !== undefined) void serve(parentPort, workerData.onnxWorker);

// camembed's public API.
export { devices } from './devices';
export type { CudaDevice, CudaDeviceName, Device, DeviceReport } from './devices';
export { cosineTopK, cosineTopKAsync, meanPoolNormalize, meanPoolNormalizeAsync } from './kernels';
export type { AttentionMask, Dtype, HiddenStates, PoolOptions, PoolShape, TopKOptions, TopKResult } from './kernels';
export { float16ToFloat32Array, float32ToFloat16Array } from './float16';
export type { Float16ArrayLike } from './float16';
export * as reference from './reference';
export { convertToOnnx, defaultCacheDir, HubError, makeRandomModel, ProxyError, resolveModel } from './model';
export type { ConvertOptions, DownloadProgress, RandomModelOptions, ResolvedModel, ResolveOptions } from './model';
export { CUDA_MAX_K, CudaMatrix } from './cuda';
export type { CudaMatrixOptions, CudaSearchOptions, CudaSearchResult, RowData } from './cuda';
export { VectorIndex } from './vector-index';
export type {
  IdsInput, IndexDescription, IndexFileProgress, LoadOptions, NeighborsChunk, NeighborsOptions, SaveOptions, SearchOptions, SearchResult, VectorIndexOptions,
  VectorsInput,
} from './vector-index';
export { DEFAULT_METRICS, evaluate, parseMetric, rankDocuments } from './eval/metrics';
export type { EvaluateOptions, MetricName, MetricValues, PerQueryEvaluation, Qrels, Run } from './eval/metrics';
export { readQrels, readTsv, readTsvEntries, TrecRunWriter } from './eval/formats';
export type { TextRecord } from './eval/formats';
export { FormatError, readTextLines, readTexts } from './lines';
export { LockHeld } from './lock-file';
export type { TextLine } from './lines';
export { evaluateRetrieval } from './eval/retrieval';
export type { RetrievalEvaluation, RetrievalEvaluationOptions } from './eval/retrieval';
export { encodeCollection, EncodeInterrupted } from './eval/embedding-cache';
export type {
  EmbeddingBatch, EncodeCollectionOptions, EncodedCollection, EncodeProgress, StreamEncoder,
} from './eval/embedding-cache';
export { DEFAULT_MODEL, Encoder, similarity } from './encoder';
export type { Embeddings, EncodeOptions, EncoderOptions, EncodeStreamOptions, SimilarityMatrix } from './encoder';

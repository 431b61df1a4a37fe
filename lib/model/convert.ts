export interface ConvertOptions { output?: string; dtype?: 'float32' | 'float16' }
export async function convertToOnnx(modelDir: string, options: ConvertOptions = {}): Promise<string> {
  throw new Error(`convertToOnnx(${modelDir}) is not implemented yet (in progress on branch model)`);
}

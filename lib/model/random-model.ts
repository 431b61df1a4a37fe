export interface RandomModelOptions {
  layers: number; hidden: number; heads: number; intermediate: number; tokenizerDir: string; outDir: string; seed?: number;
}
export async function makeRandomModel(options: RandomModelOptions): Promise<void> {
  throw new Error(`makeRandomModel is not implemented yet (in progress on branch model)`);
}

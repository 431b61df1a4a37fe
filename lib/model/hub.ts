export interface HubOptions {
  revision?: string;
  cacheDir?: string;
  offline?: boolean;
  onProgress?: (p: { file: string; bytes: number; totalBytes: number | null }) => void;
}
export function looksLikeHubId(source: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(source);
}
export async function resolveHubModel(id: string, options: HubOptions): Promise<import('./local').ResolvedModel> {
  throw new Error(`Hub download of ${id} is not implemented yet (in progress on branch model)`);
}

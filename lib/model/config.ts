// A model's config.json: the integer settings camembed reads (the encoder, the converter), all
// checked where the file is read, so that a bad one is named there, not by what it breaks later.
import * as path from 'path';
import { readJsonFile } from '../json-file';

/** The least value of each integer setting: sizes at least 1, the padding id at least 0. */
const INTEGER_SETTINGS = {
  hidden_size: 1, num_attention_heads: 1, num_hidden_layers: 1, intermediate_size: 1, vocab_size: 1,
  max_position_embeddings: 1, type_vocab_size: 1, pad_token_id: 0,
};
export type IntegerSetting = keyof typeof INTEGER_SETTINGS;

/** A model folder's config.json, read and checked. */
export interface ModelConfig {
  file: string;
  settings: Record<string, unknown>;
}

/**
 * Reads `dir`/config.json: each integer setting there (absent or null: Hugging Face's default) must
 * be an integer of its range, and pad_token_id a row of the vocabulary (transformers' nn.Embedding
 * refuses another); errors name the file and the setting.
 */
export function readModelConfig(dir: string): ModelConfig {
  const file = path.join(dir, 'config.json');
  const settings = readJsonFile(file);
  for (const [key, least] of Object.entries(INTEGER_SETTINGS)) {
    const value = settings[key] ?? null;
    if (value !== null && (typeof value !== 'number' || !Number.isInteger(value) || value < least)) {
      throw new Error(`${file}: ${key} must be a ${least === 1 ? 'positive' : 'non-negative'} integer, got ${JSON.stringify(value)}`);
    }
  }
  const { pad_token_id: padId, vocab_size: vocab } = settings;
  if (typeof padId === 'number' && typeof vocab === 'number' && padId >= vocab) {
    throw new Error(`${file}: pad_token_id ${padId} must be a token id, below vocab_size ${vocab}`);
  }
  return { file, settings };
}

/** An integer setting of `config`, or `fallback` (Hugging Face's default) when absent or null; refused when neither. */
export function configInteger(config: ModelConfig, key: IntegerSetting, fallback?: number): number {
  const value = config.settings[key] ?? fallback;
  if (value === undefined) throw new Error(`${config.file}: ${key} is missing (a ${INTEGER_SETTINGS[key] === 1 ? 'positive' : 'non-negative'} integer)`);
  return value as number;  // checked by readModelConfig
}

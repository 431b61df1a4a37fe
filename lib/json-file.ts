// Reads a JSON configuration file, with errors that name the file.
import * as fs from 'fs';

/** The parsed contents of a JSON file, whatever they are. */
export function readJsonValue(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
  }
}

/** A JSON file that holds an object (settings): `null` or a list there is an error naming the file. */
export function readJsonFile(file: string): Record<string, unknown> {
  const value = readJsonValue(file);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${file} must hold a JSON object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  }
  return value as Record<string, unknown>;
}


#!/usr/bin/env node
// The `camembed` command: each subcommand lives in lib/commands/<name>.ts and exports
// `summary` (one line for the help) and `run(argv)`; it is loaded only when used.
import * as os from 'os';
import * as path from 'path';
import { trackTemporaries } from './atomic-file';
import { CliInterrupted, CliUsageError, setCommandName } from './commands/args';
import { suggestion } from './validate';
import { readJsonFile } from './json-file';
import { endProgressLine } from './progress';

interface Command {
  summary: string;
  run(argv: string[]): Promise<void>;
}

const COMMANDS: Record<string, () => Command> = {
  convert: () => require('./commands/convert'),
  encode: () => require('./commands/encode'),
  eval: () => require('./commands/eval'),
  index: () => require('./commands/index'),
  'make-random-model': () => require('./commands/make-random-model'),
  search: () => require('./commands/search'),
};

function usage(): string {
  const lines = Object.keys(COMMANDS)
    .sort()
    .map((name) => `  ${name.padEnd(20)} ${COMMANDS[name]().summary}`);
  return `usage: camembed <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n` +
    `Run 'camembed <command> --help' (or 'camembed help <command>') for a command's options, 'camembed --version' for the version.`;
}

/** The package's version: package.json sits one folder above this file (dist/cli.js or lib/cli.ts). */
function version(): string {
  return String(readJsonFile(path.join(__dirname, '..', 'package.json')).version);
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {  // a usage error: the usage goes to stderr, as the shell's own tools do
    process.stderr.write(usage() + '\n');
    return 2;
  }
  if (name === 'help' && rest.length > 0) return main([...rest, '--help']);  // `camembed help index info`
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const load = COMMANDS[name];
  if (load === undefined) {
    process.stderr.write(`camembed: unknown command '${name}'${suggestion(name, Object.keys(COMMANDS))}\n\n${usage()}\n`);
    return 2;
  }
  setCommandName(name);
  try {
    await load().run(rest);
    return 0;
  } catch (err) {
    endProgressLine();
    // An output named by path whose reader left (--output /dev/stdout, a FIFO): quietly, as '-' below.
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') return 128 + 13;
    if (err instanceof CliUsageError) {
      process.stderr.write(`camembed ${name}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof CliInterrupted) {
      process.stderr.write(`camembed ${name}: ${err.message}\n`);
      return 128 + os.constants.signals[err.signal];
    }
    process.stderr.write(`camembed ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/**
 * A write to standard output failed. A reader that stops early (`camembed search ... | head`) closes
 * the pipe: end quietly with the status a SIGPIPE gives Unix tools (141), not with an error message
 * or a stack trace. Any other write error (a full disk: `> /dev/full`) is a runtime error that says
 * so, as in coreutils. Either way a progress bar left drawn is ended first, else the shell's prompt
 * or the message would follow it on its line.
 */
export function onStdoutError(err: NodeJS.ErrnoException): never {
  endProgressLine();
  if (err.code === 'EPIPE') process.exit(128 + 13);
  process.stderr.write(`camembed: cannot write to standard output: ${err.message}\n`);
  process.exit(1);
}

/**
 * A warning of the library (a run id holding '#', a cached model used when the Hub cannot be reached)
 * as a line of its own, as the command's other messages: Node's own printer wrote '(node:PID) Warning:
 * ...' and a hint at `node --trace-warnings`, after a progress bar on its line.
 */
export function onWarning(warning: Error): void {
  endProgressLine();
  process.stderr.write(`camembed: warning: ${warning.message}\n`);
}

if (require.main === module) {
  process.stdout.on('error', onStdoutError);
  process.removeAllListeners('warning');  // Node's printer
  process.on('warning', onWarning);
  // Standard error whose reader left (`2>&1 | tee log`, where Ctrl-C ends tee too) loses the messages, not
  // the run: unhandled, the 'error' ended the process at once (exit 1; eval dropped what it had encoded).
  process.stderr.on('error', () => {});
  trackTemporaries();  // for the commands' Ctrl-C handlers (onInterrupt)
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}

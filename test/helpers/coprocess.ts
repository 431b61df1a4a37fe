// The CLI as a coprocess: a program that writes a line to its standard input and waits for the answer.
import { spawn } from 'child_process';
import * as path from 'path';

/** `node dist/cli.js ...args` with piped stdio; `answered(done)` waits until `done(stdout so far)` (20 s at most). */
export function cliCoprocess(args: string[]) {
  const cli = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const run = {
    stdin: child.stdin, out: Buffer.alloc(0), err: '',
    exited: new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code))),
    answered: async (done: (out: Buffer) => boolean, what: string) => {
      for (let waited = 0; !done(run.out); waited += 10) {
        if (waited > 20_000 || child.exitCode !== null) throw new Error(`not ${what}; stdout: ${run.out.length} bytes; stderr: ${run.err}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
  child.stdout.on('data', (d: Buffer) => { run.out = Buffer.concat([run.out, d]); });
  child.stderr.on('data', (d) => { run.err += String(d); });
  return run;
}

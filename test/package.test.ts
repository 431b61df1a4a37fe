// What `npm install camembed` gets: the file list of `npm pack --dry-run` must hold everything the
// install script needs to compile the addon and everything dist/ loads, and nothing that only this
// repository's development uses (tests, benchmarks, build outputs, models). The whole path (pack,
// install into a fresh project, require/import/tsc/CLI from there) is `npm run check:package`,
// which needs the npm registry and up to ~45 s, so it is no test.
import { execFile, execFileSync } from 'child_process';
import * as fs from 'fs';
import { isBuiltin } from 'module';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

// --ignore-scripts: no `prepare` (tsc); `npm test` has just compiled dist/ in its pretest.
// npm 11 prints an array of packages, npm 12 an object keyed by name.
const packs = JSON.parse(
  execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
);
const packed = (Array.isArray(packs) ? packs[0] : packs[pkg.name]) as { unpackedSize: number; files: { path: string; size: number }[] };
const shipped = new Set(packed.files.map((f) => f.path));

/** stdout of `node ...args` run in the repository root. */
function runNode(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: root, env }, (error, out) => (error ? reject(error) : resolve(out)));
  });
}

function walk(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

test('the native sources the install compiles are shipped, and every include they name', () => {
  const needed = walk('native').filter((f) => !/^native\/(tests|bench)\//.test(f));
  expect(needed.filter((f) => !shipped.has(f))).toEqual([]);
  expect(shipped.has('CMakeLists.txt')).toBe(true);
  const unresolved: string[] = [];
  for (const file of [...shipped].filter((f) => f.startsWith('native/'))) {
    for (const [, name] of fs.readFileSync(path.join(root, file), 'utf8').matchAll(/^#include "([^"]+)"/gm)) {
      const candidates = [path.join(path.dirname(file), name), path.join('native/include', name)];
      if (!candidates.some((c) => shipped.has(c))) unresolved.push(`${file}: ${name}`);
    }
  }
  expect(unresolved).toEqual([]);
});

test('the exports map opens the root module and package.json only, the same files as main and types', () => {
  const root = pkg.exports['.'] as { types: string; default: string };
  expect([path.normalize(root.default), path.normalize(root.types)]).toEqual([path.normalize(pkg.main), path.normalize(pkg.types)]);
  expect(Object.keys(pkg.exports).sort()).toEqual(['.', './package.json']);
});

test('dist/ is shipped whole: main, types, bin and the output of every lib/ module, and nothing stale', () => {
  const entries = [pkg.main, pkg.types, ...Object.values(pkg.bin as Record<string, string>)];
  const modules = walk('lib').filter((f) => f.endsWith('.ts')).map((f) => f.replace(/^lib\//, 'dist/').replace(/\.ts$/, ''));
  const needed = [...entries, ...modules.flatMap((m) => [`${m}.js`, `${m}.d.ts`])];
  expect(needed.filter((f) => !shipped.has(f))).toEqual([]);
  // tsc never deletes: output of a removed lib/ module would ship until dist/ is rebuilt from scratch.
  const stale = [...shipped].filter((f) => f.startsWith('dist/') && !modules.includes(f.replace(/(\.d\.ts|\.js|\.js\.map)$/, '')));
  expect(stale).toEqual([]);
});

test('what dist/ loads is Node, a dependency or a shipped file (no devDependency, no ../shared)', () => {
  const bad: string[] = [];
  const seen = new Set<string>();
  for (const file of [...shipped].filter((f) => /^dist\/.*\.(js|d\.ts)$/.test(f))) {
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    const specifiers = [...text.matchAll(/(?:require\(|from |import\(|\/\/\/ <reference types=)['"]([^'"]+)['"]/g)].map((m) => m[1]);
    for (const spec of specifiers) {
      seen.add(spec);
      if (spec.startsWith('.')) {
        const target = path.join(path.dirname(file), spec);
        const ok = [target, `${target}.js`, `${target}.d.ts`, path.join(target, 'index.js')].some((t) => shipped.has(t));
        if (!ok) bad.push(`${file}: ${spec}`);
      } else {
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        if (!isBuiltin(spec) && !(name in pkg.dependencies)) bad.push(`${file}: ${spec}`);
      }
    }
  }
  expect(bad).toEqual([]);
  expect([...seen]).toEqual(expect.arrayContaining(['onnxruntime-node', 'fs', './native']));  // the scan finds them
});

test('nothing from development ships: tests, benchmarks, builds, models; no file over 256 KiB', () => {
  const forbidden = /^(test|bench|lib|scripts|build|coverage|node_modules|native\/tests|native\/bench|\.gpu)\/|__pycache__|\.(node|o|a|pyc|onnx|safetensors|npy|f32|cmbd|tgz)$/;
  expect([...shipped].filter((f) => forbidden.test(f))).toEqual([]);
  expect(packed.files.filter((f) => f.size > 256 * 1024).map((f) => f.path)).toEqual([]);
  expect(packed.unpackedSize).toBeLessThan(4 * 1024 * 1024);
});

test("a missing addon's error tells a user of the package how to build it", async () => {
  const script = `try { require(${JSON.stringify(root)}).devices(); } catch (e) { console.log(e.message); }`;
  const stdout = await runNode(['-e', script], { ...process.env, CAMEMBED_ADDON: path.join(root, 'no-such-addon.node') });
  expect(stdout).toContain('cannot load the native addon');
  expect(stdout).toContain("'npm rebuild camembed' in the project that installed it, once its package.json allows camembed's install script");
  expect(stdout).toContain("'npm install-scripts approve camembed'");
});

test('an addon built for another Node.js (another V8) is refused with how to rebuild it; this one matches', async () => {
  // It uses V8's API, and Node loads a Node-API module built for any version without a word.
  const fake = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-addon-')), 'camembed.js');
  fs.writeFileSync(fake, "module.exports = { v8Version: '1.0' };");
  const script = `try { require(${JSON.stringify(root)}).devices(); } catch (e) { console.log(e.message); }`;
  const stdout = await runNode(['-e', script], { ...process.env, CAMEMBED_ADDON: fake });
  const running = process.versions.v8.split('.').slice(0, 2).join('.');
  expect(stdout).toContain(`was built for another Node.js (V8 1.0; Node.js ${process.version} runs V8 ${running}). Rebuild it with 'npm rebuild camembed'`);
  fs.rmSync(path.dirname(fake), { recursive: true, force: true });
  const real = await runNode(['-e', `console.log(require(${JSON.stringify(path.join(root, 'dist', 'native.js'))}).loadAddon().v8Version)`]);
  expect(real.trim()).toBe(running);
});

test("the build refuses Node.js headers of another major than the Node.js it is for (a stale npm nodedir)", async () => {
  // A nodedir whose headers say Node.js 1: cmake-js builds for the Node.js running it.
  const nodedir = fs.mkdtempSync(path.join(os.tmpdir(), 'camembed-nodedir-'));
  fs.mkdirSync(path.join(nodedir, 'include', 'node'), { recursive: true });
  fs.writeFileSync(path.join(nodedir, 'include', 'node', 'node.h'), '');
  fs.writeFileSync(path.join(nodedir, 'include', 'node', 'node_version.h'), '#define NODE_MAJOR_VERSION 1\n');
  const env = { ...process.env, npm_config_nodedir: nodedir, CAMEMBED_CUDA: 'OFF' };
  const args = [require.resolve('cmake-js/bin/cmake-js'), 'configure', '--out', path.join(nodedir, 'build')];
  const output = await new Promise<string>((resolve) => {
    execFile(process.execPath, args, { cwd: root, env }, (error, out, err) => resolve(`${error ? 'failed' : 'configured'}\n${out}${err}`));
  });
  fs.rmSync(nodedir, { recursive: true, force: true });
  expect(output.split('\n')[0]).toBe('failed');
  expect(output.replace(/\s+/g, ' ')).toContain(
    `camembed: the Node.js headers in ${path.join(nodedir, 'include', 'node')} are Node.js 1's, but the addon is being built for Node.js ${process.versions.node}`);
});

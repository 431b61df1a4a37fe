// A local imitation of the Hugging Face Hub for download tests (never the real network), on two
// 127.0.0.1 servers: the "hub" answers /<org>/<name>/resolve/<revision>/<file> and redirects LFS
// files to the "cdn" (another origin, as on the real Hub), which serves them with Range support
// through signed links that can expire.
// Headers as the Hub sends them: X-Repo-Commit, ETag (git blob sha1 for regular files) and, on
// the LFS redirect, X-Linked-Etag (the sha256) and X-Linked-Size.
import * as crypto from 'crypto';
import * as http from 'http';
import * as https from 'https';
import { AddressInfo } from 'net';

export interface FakeRepo {
  commit: string;                    // 40 hex digits
  files: Record<string, Buffer>;
  lfs: string[];                     // files served through the CDN redirect
  token?: string;                    // private repo: requires "Authorization: Bearer <token>"
}

interface LoggedRequest { server: 'hub' | 'cdn'; method: string; url: string; range?: string; authorization?: string }

export interface FakeHub {
  endpoint: string;
  requests: LoggedRequest[];
  // Fault injection, each consumed as it fires.
  cutAfterBytes: Map<string, number>;   // file → close the CDN connection after this many bytes, once
  corrupt: Set<string>;                 // file → the CDN serves flipped bytes (checksum must fail)
  failures: Map<string, number>;        // file → answer 503 on the hub this many times
  rateLimits: Map<string, { times: number; retryAfter: string }>;  // file → answer 429 with Retry-After
  expireOnCut: Set<string>;             // file → when its cut fires, every CDN link issued so far expires (403)
  moved: Map<string, string>;           // old repo id → the id it redirects to (renamed and legacy one-part repos)
  close(): Promise<void>;
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

// `tls`: serve https with this certificate (for 'localhost'), both servers, at https://localhost:<port>.
function listen(handler: http.RequestListener, tls?: { key: Buffer; cert: Buffer }): Promise<http.Server> {
  const server = tls === undefined ? http.createServer(handler) : https.createServer(tls, handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

export async function startFakeHub(repos: Record<string, FakeRepo>, tls?: { key: Buffer; cert: Buffer }): Promise<FakeHub> {
  const origin = (server: http.Server) => `${tls === undefined ? 'http://127.0.0.1' : 'https://localhost'}:${(server.address() as AddressInfo).port}`;
  const requests: LoggedRequest[] = [];
  const cutAfterBytes = new Map<string, number>();
  const corrupt = new Set<string>();
  const failures = new Map<string, number>();
  const rateLimits = new Map<string, { times: number; retryAfter: string }>();
  const expireOnCut = new Set<string>();
  const moved = new Map<string, string>();
  let linksIssued = 0;
  let validFrom = 0;  // links signed with a lower number have expired
  const blobs = new Map<string, { file: string; data: Buffer }>();
  for (const repo of Object.values(repos)) {
    for (const file of repo.lfs) blobs.set(sha256(repo.files[file]), { file, data: repo.files[file] });
  }
  const log = (server: 'hub' | 'cdn', req: http.IncomingMessage) => requests.push({
    server, method: req.method ?? '', url: req.url ?? '', range: req.headers.range, authorization: req.headers.authorization,
  });

  const cdn = await listen((req, res) => {
    log('cdn', req);
    const link = /^\/blobs\/([0-9a-f]+)\?sig=(\d+)$/.exec(req.url ?? '');
    const blob = link === null ? undefined : blobs.get(link[1]);
    if (link === null || blob === undefined) return void res.writeHead(404).end();
    if (Number(link[2]) < validFrom) return void res.writeHead(403).end('Request has expired');
    let data = blob.data;
    if (corrupt.has(blob.file)) data = Buffer.from(data.map((b) => b ^ 0xff));
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range !== null) {
      start = Number(range[1]);
      if (start >= data.length) return void res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
      res.writeHead(206, { 'content-length': data.length - start, 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` });
    } else {
      res.writeHead(200, { 'content-length': data.length, etag: `"${sha256(blob.data)}"` });
    }
    if (req.method === 'HEAD') return void res.end();
    const cut = cutAfterBytes.get(blob.file);
    if (cut !== undefined && cut < data.length - start) {
      cutAfterBytes.delete(blob.file);
      if (expireOnCut.delete(blob.file)) validFrom = linksIssued;
      res.write(data.subarray(start, start + cut), () => res.destroy());  // the connection drops mid-file
      return;
    }
    res.end(data.subarray(start));
  }, tls);
  const cdnOrigin = origin(cdn);

  const hub = await listen((req, res) => {
    log('hub', req);
    const m = /^\/((?:[^/]+\/)?[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? '');
    const movedTo = m === null ? undefined : moved.get(m[1]);
    if (movedTo !== undefined) return void res.writeHead(307, { location: `/${movedTo}/resolve/${m![2]}/${m![3]}` }).end();
    const repo = m === null ? undefined : repos[m[1]];
    // The real Hub answers 401 for a repo that does not exist, as for one the caller may not read.
    if (m === null || repo === undefined) {
      return void res.writeHead(401, { 'x-error-code': 'RepoNotFound', 'x-error-message': 'Repository not found' }).end();
    }
    if (repo.token !== undefined && req.headers.authorization !== `Bearer ${repo.token}`) {
      const message = req.headers.authorization === undefined ? 'Repository not found' : 'Invalid credentials in Authorization header';
      return void res.writeHead(401, { 'x-error-code': 'RepoNotFound', 'x-error-message': message }).end();
    }
    const revision = decodeURIComponent(m[2]);
    if (revision !== 'main' && revision !== repo.commit) return void res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end();
    const file = m[3].split('/').map(decodeURIComponent).join('/');
    const limit = rateLimits.get(file);
    if (limit !== undefined && limit.times > 0) {
      limit.times--;
      return void res.writeHead(429, { 'retry-after': limit.retryAfter, 'x-error-message': 'rate limited' }).end();
    }
    const failuresLeft = failures.get(file) ?? 0;
    if (failuresLeft > 0) {
      failures.set(file, failuresLeft - 1);
      return void res.writeHead(503).end();
    }
    const data = repo.files[file];
    if (data === undefined) {
      return void res.writeHead(404, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': repo.commit }).end();
    }
    if (repo.lfs.includes(file)) {
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(data)}\nsize ${data.length}\n`);
      return void res.writeHead(302, {
        location: `${cdnOrigin}/blobs/${sha256(data)}?sig=${linksIssued++}`, 'x-repo-commit': repo.commit,
        etag: `"${gitSha1(pointer)}"`, 'x-linked-etag': `"${sha256(data)}"`, 'x-linked-size': data.length,
      }).end();
    }
    res.writeHead(200, { 'content-length': data.length, etag: `"${gitSha1(data)}"`, 'x-repo-commit': repo.commit });
    res.end(req.method === 'HEAD' ? undefined : data);
  }, tls);

  return {
    endpoint: origin(hub),
    requests, cutAfterBytes, corrupt, failures, rateLimits, expireOnCut, moved,
    close: async () => {
      for (const s of [hub, cdn]) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
    },
  };
}

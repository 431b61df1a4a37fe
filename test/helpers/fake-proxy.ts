// A local forward proxy for download tests: http requests in absolute form are forwarded, and
// CONNECT opens a tunnel (what clients use for https). It logs each request line with its
// Proxy-Authorization header. 'localhost' targets are reached at 127.0.0.1.
import * as http from 'http';
import * as net from 'net';
import { AddressInfo } from 'net';

export interface FakeProxy {
  url: string;
  log: string[];
  /** When set, CONNECT is answered with this status instead of a tunnel. */
  refuseConnect?: number;
  close(): Promise<void>;
}

export async function startFakeProxy(): Promise<FakeProxy> {
  const log: string[] = [];
  const record = (req: http.IncomingMessage) => log.push(`${req.method} ${req.url} ${req.headers['proxy-authorization'] ?? '-'}`);
  const server = http.createServer((req, res) => {
    record(req);
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    const out = http.request(new URL(req.url ?? ''), { method: req.method, headers }, (upstream) => {
      res.writeHead(upstream.statusCode ?? 502, upstream.headers);
      upstream.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  const sockets = new Set<net.Socket>();
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    record(req);
    if (proxy.refuseConnect !== undefined) {
      client.end(`HTTP/1.1 ${proxy.refuseConnect} Refused\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const [host, port] = (req.url ?? '').split(':');
    const upstream = net.connect(Number(port), host === 'localhost' ? '127.0.0.1' : host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy: FakeProxy = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  return proxy;
}

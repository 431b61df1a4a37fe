// One HTTP(S) request, through the proxy the environment names, as Python's requests (and so
// huggingface_hub) reads it: HTTPS_PROXY for https URLs, HTTP_PROXY for http ones (either case),
// unless NO_PROXY lists the host. Node's http and https modules read none of these themselves.
// https goes through a CONNECT tunnel (TLS end to end, the certificate checked against the real
// host); http is sent to the proxy in absolute form. Credentials in the proxy URL are sent as
// Proxy-Authorization: Basic.
import * as http from 'http';
import * as https from 'https';
import * as net from 'net';
import * as tls from 'tls';

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

const TIMEOUT_MS = 30_000;

const env = (name: string): string | undefined => process.env[name.toLowerCase()] || process.env[name.toUpperCase()] || undefined;

// NO_PROXY: comma-separated hosts, each matching itself and its subdomains (a leading dot or
// '*.' optional), optionally with a port; '*' alone matches everything.
function bypassesProxy(target: URL): boolean {
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  return (env('no_proxy') ?? '').split(/[\s,]+/).filter((e) => e.length > 0).some((entry) => {
    if (entry === '*') return true;
    const m = /^(.*?)(?::(\d+))?$/.exec(entry.replace(/^\[|\](?=:|$)/g, ''))!;
    const name = m[1].replace(/^\*?\./, '').toLowerCase();
    return (m[2] === undefined || m[2] === port) && (host === name || host.endsWith(`.${name}`));
  });
}

/** The proxy for `target`, or null. A proxy given without a scheme is http://. */
export function proxyFor(target: URL): URL | null {
  const value = env(target.protocol === 'https:' ? 'https_proxy' : 'http_proxy');
  if (value === undefined || bypassesProxy(target)) return null;
  try {
    return new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    throw new Error(`${target.protocol === 'https:' ? 'HTTPS_PROXY' : 'HTTP_PROXY'} is not a URL: ${JSON.stringify(value)}`);
  }
}

function proxyHeaders(proxy: URL): Record<string, string> {
  if (proxy.username === '') return {};
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}` };
}

const defaultPort = (url: URL) => url.port || (url.protocol === 'https:' ? '443' : '80');

// A socket to `target` through `proxy`'s CONNECT tunnel.
function tunnel(proxy: URL, target: URL): Promise<net.Socket> {
  const authority = `${target.hostname}:${defaultPort(target)}`;
  return new Promise((resolve, reject) => {
    const req = (proxy.protocol === 'https:' ? https : http).request({
      host: proxy.hostname.replace(/^\[|\]$/g, ''), port: defaultPort(proxy), method: 'CONNECT', path: authority,
      headers: { host: authority, ...proxyHeaders(proxy) },
    });
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`no answer from the proxy ${proxy.host} for ${TIMEOUT_MS / 1000} s`)));
    req.on('connect', (res, socket) => {
      socket.setTimeout(0);  // the request's timeout would otherwise stay on the tunnel
      if (res.statusCode === 200) return resolve(socket);
      socket.destroy();
      reject(new Error(`the proxy ${proxy.host} refused a tunnel to ${authority} (${res.statusCode})`));
    });
    req.on('error', (err) => reject(new Error(`cannot reach the proxy ${proxy.host}: ${err.message}`)));
    req.end();
  });
}

export async function request(url: string, method: 'HEAD' | 'GET', headers: Record<string, string>): Promise<Response> {
  const target = new URL(url);
  const proxy = proxyFor(target);
  let send: () => http.ClientRequest;
  if (proxy !== null && target.protocol === 'https:') {
    const socket = await tunnel(proxy, target);
    const servername = net.isIP(target.hostname) === 0 ? target.hostname : undefined;  // SNI takes names only
    send = () => https.request(target, { method, headers, createConnection: () => tls.connect({ socket, host: target.hostname, servername }) });
  } else if (proxy !== null) {
    send = () => (proxy.protocol === 'https:' ? https : http).request({
      host: proxy.hostname.replace(/^\[|\]$/g, ''), port: defaultPort(proxy), method, path: target.href,
      headers: { ...headers, host: target.host, ...proxyHeaders(proxy) },
    });
  } else {
    send = () => (target.protocol === 'https:' ? https : http).request(target, { method, headers });
  }
  return new Promise((resolve, reject) => {
    const req = send();
    req.on('response', (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res }));
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${url} for ${TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}

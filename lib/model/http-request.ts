// One HTTP(S) request, through the proxy the environment names, much as Python's requests (and so
// huggingface_hub) reads it: HTTPS_PROXY for https URLs, HTTP_PROXY for http ones, ALL_PROXY for
// either when those are unset (any case), unless NO_PROXY lists the host. Node's http and https
// modules read none of these themselves.
// https goes through a CONNECT tunnel (TLS end to end, the certificate checked against the real
// host); http is sent to the proxy in absolute form. Credentials in the proxy URL are sent as
// Proxy-Authorization: Basic.
import * as http from 'http';
import * as https from 'https';
import * as net from 'net';
import * as tls from 'tls';
import { watchAbort } from '../abort';

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

const TIMEOUT_MS = 30_000;

/** A proxy that refused us or cannot be used as given: `retryable` only for its 5xx answers. */
export class ProxyError extends Error {
  constructor(
    message: string,
    /** The proxy answered with a 5xx: worth trying again later. */
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'ProxyError';
  }
}

const env = (name: string): string | undefined => process.env[name.toLowerCase()] || process.env[name.toUpperCase()] || undefined;
const bare = (host: string) => host.replace(/^\[|\]$/g, '');  // URL keeps an IPv6 literal's brackets

// NO_PROXY: comma-separated entries, each a host name matching itself and its subdomains (a
// leading '.' or '*.' optional), an IP address (IPv6 bare or in brackets) or an IP network in CIDR
// form; a name or bracketed address optionally with ':port'; '*' alone matches everything.
function bypassesProxy(target: URL): boolean {
  const host = bare(target.hostname).toLowerCase();
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  const family = net.isIP(host);
  return (env('no_proxy') ?? '').split(/[\s,]+/).filter((e) => e.length > 0).some((entry) => {
    if (entry === '*') return true;
    const cidr = /^([^/]+)\/(\d+)$/.exec(entry);
    if (cidr !== null) {
      const kind = net.isIP(cidr[1]);
      if (family === 0 || kind !== family || Number(cidr[2]) > (kind === 4 ? 32 : 128)) return false;
      const block = new net.BlockList();
      block.addSubnet(cidr[1], Number(cidr[2]), kind === 4 ? 'ipv4' : 'ipv6');
      return block.check(host, kind === 4 ? 'ipv4' : 'ipv6');
    }
    // A port only after a name, an IPv4 address or a bracketed IPv6 one (a bare IPv6 has colons).
    const m = net.isIP(entry) === 6 ? null : /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry);
    if (m === null && net.isIP(entry) !== 6) return false;
    const name = bare(m === null ? entry : m[1]).replace(/^\*?\./, '').toLowerCase();
    if (m !== null && m[2] !== undefined && m[2] !== port) return false;
    return host === name || (net.isIP(name) === 0 && host.endsWith(`.${name}`));
  });
}

/** The proxy for `target`, or null. A proxy given without a scheme is http://; only http and https proxies are spoken. */
export function proxyFor(target: URL): URL | null {
  const variable = target.protocol === 'https:' ? 'https_proxy' : 'http_proxy';
  const value = env(variable) ?? env('all_proxy');
  if (value === undefined || bypassesProxy(target)) return null;
  let proxy: URL;
  try {
    proxy = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    throw new ProxyError(`the proxy setting (${variable.toUpperCase()} or ALL_PROXY) is not a URL: ${JSON.stringify(value)}`, false);
  }
  if (proxy.protocol !== 'http:' && proxy.protocol !== 'https:') {
    throw new ProxyError(`the proxy ${proxy.host} is a ${proxy.protocol.slice(0, -1)} proxy; only http:// and https:// proxies are supported`, false);
  }
  return proxy;
}

function proxyHeaders(proxy: URL): Record<string, string> {
  if (proxy.username === '') return {};
  let credentials: string;
  try {
    credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  } catch {
    throw new ProxyError(`the credentials in the URL of the proxy ${proxy.host} are not valid percent-encoding`, false);
  }
  return { 'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}` };
}

/**
 * Destroys `stream` with `signal.reason` when the signal aborts (at once if it has); returns what
 * removes the listener, for when the stream no longer needs it (a shared signal keeps none).
 */
export function destroyOnAbort(stream: { destroy(err?: Error): unknown }, signal: AbortSignal | undefined): () => void {
  return signal === undefined ? () => undefined : watchAbort(signal, () => stream.destroy(signal.reason));
}

const defaultPort = (url: URL) => url.port || (url.protocol === 'https:' ? '443' : '80');

// A socket to `target` through `proxy`'s CONNECT tunnel; an abort of `signal` ends the wait for it.
function tunnel(proxy: URL, target: URL, signal: AbortSignal | undefined): Promise<net.Socket> {
  const authority = `${target.hostname}:${defaultPort(target)}`;
  return new Promise((resolve, reject) => {
    const req = (proxy.protocol === 'https:' ? https : http).request({
      host: bare(proxy.hostname), port: defaultPort(proxy), method: 'CONNECT', path: authority,
      headers: { host: authority, ...proxyHeaders(proxy) },
    });
    const settle = destroyOnAbort(req, signal);
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`no answer from the proxy ${proxy.host} for ${TIMEOUT_MS / 1000} s`)));
    req.on('connect', (res, socket) => {
      settle();
      socket.setTimeout(0);  // the request's timeout would otherwise stay on the tunnel
      if (res.statusCode === 200) return resolve(socket);
      socket.destroy();
      const status = res.statusCode ?? 0;
      const advice = status === 407 ? ': check the credentials in the proxy URL' : status < 500 ? ': or list the host in NO_PROXY' : '';
      reject(new ProxyError(`the proxy ${proxy.host} refused a tunnel to ${authority} (${status})${advice}`, status >= 500));
    });
    req.on('error', (err) => {
      settle();
      reject(signal?.aborted ? signal.reason : new Error(`cannot reach the proxy ${proxy.host}: ${err.message}`));
    });
    req.end();
  });
}

/**
 * An abort of `signal` before the answer comes destroys the request with `signal.reason`; the listener
 * goes when the answer (or an error) comes: a caller reading the body stops it itself.
 */
export async function request(url: string, method: 'HEAD' | 'GET', headers: Record<string, string>,
  signal?: AbortSignal): Promise<Response> {
  signal?.throwIfAborted();
  const target = new URL(url);
  const proxy = proxyFor(target);
  let send: () => http.ClientRequest;
  if (proxy !== null && target.protocol === 'https:') {
    const socket = await tunnel(proxy, target, signal);
    const host = bare(target.hostname);  // the certificate is checked against it
    const servername = net.isIP(host) === 0 ? host : undefined;  // SNI takes names only
    send = () => {
      try {
        return https.request(target, { method, headers, createConnection: () => tls.connect({ socket, host, servername }) });
      } catch (err) {
        socket.destroy();  // e.g. a header Node refuses: the tunnel would otherwise stay open
        throw err;
      }
    };
  } else if (proxy !== null) {
    send = () => (proxy.protocol === 'https:' ? https : http).request({
      host: bare(proxy.hostname), port: defaultPort(proxy), method, path: target.href,
      headers: { ...headers, host: target.host, ...proxyHeaders(proxy) },
    });
  } else {
    send = () => (target.protocol === 'https:' ? https : http).request(target, { method, headers });
  }
  return new Promise((resolve, reject) => {
    const req = send();
    const settle = destroyOnAbort(req, signal);  // also an abort between the tunnel's answer and now
    req.on('response', (res) => {
      settle();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
    });
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${url} for ${TIMEOUT_MS / 1000} s`)));
    req.on('error', (err) => {
      settle();
      reject(err);
    });
    req.end();
  });
}

import net from 'node:net';
import { Duplex } from 'node:stream';
import postgres from 'postgres';

// A DATABASE_URL may name several hosts, as libpq reads it: postgres://user:pw@h1:5432,h2:5432/db
// ?target_session_attrs=read-write (the standard way for a client to follow a failover without a
// proxy). Neither pg (node-pg-migrate's driver) nor the WHATWG URL parser accepts such a URL, and
// postgres.js, which does, hangs a query for ever while every host is down and gives up on a host
// that times out instead of trying the next one. So the service finds the host itself, in the order
// given, and connects each driver to that one host.

export interface DatabaseHost {
  host: string;
  port: number;
}

/** What the service may ask of the host it connects to (libpq's target_session_attrs). */
export type TargetSessionAttrs = 'any' | 'read-write' | 'primary' | 'standby';
/** The targets of DATABASE_URL, whose host the service writes to. */
export const PRIMARY_TARGETS: readonly TargetSessionAttrs[] = ['any', 'read-write', 'primary'];
/** The targets of DATABASE_REPLICA_URL, whose host only answers reads. */
export const REPLICA_TARGETS: readonly TargetSessionAttrs[] = ['any', 'standby'];

export interface DatabaseUrl {
  /** The hosts in the order given; one for an ordinary URL. */
  hosts: DatabaseHost[];
  target: TargetSessionAttrs;
  /** The URL with only `hosts[index]` and no target_session_attrs: what pg and postgres.js read. */
  forHost(index: number): string;
}

export class DatabaseUrlError extends Error {}

const DEFAULT_PORT = 5432;

/**
 * Reads a postgres:// URL with one host or several. Throws DatabaseUrlError, whose message never
 * holds the password, for a URL that no driver could use, or whose target_session_attrs is not one of
 * `targets`.
 */
export function parseDatabaseUrl(url: string, targets: readonly TargetSessionAttrs[] = PRIMARY_TARGETS): DatabaseUrl {
  const scheme = /^postgres(ql)?:\/\//.exec(url);
  if (!scheme) throw new DatabaseUrlError('must start with postgres:// or postgresql://');
  const rest = url.slice(scheme[0].length);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const tail = authorityEnd === -1 ? '' : rest.slice(authorityEnd);
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at + 1);
  const hostList = authority.slice(at + 1);
  const hosts = hostList === '' ? [] : hostList.split(',').map(parseHost);
  const single = (host: DatabaseHost) => `${scheme[0]}${userinfo}${formatHost(host)}`;
  let target: TargetSessionAttrs = 'any';
  let withoutTarget = tail;
  const queryStart = tail.indexOf('?');
  if (queryStart !== -1) {
    const params = new URLSearchParams(tail.slice(queryStart + 1).split('#')[0]);
    const given = params.get('target_session_attrs');
    if (given !== null) {
      if (!targets.includes(given as TargetSessionAttrs))
        throw new DatabaseUrlError(
          targets === REPLICA_TARGETS
            ? `target_session_attrs=${given} is not supported for a replica: use standby (or any)`
            : `target_session_attrs=${given} is not supported: the service writes, so use read-write (or primary, or any)`,
        );
      target = given as TargetSessionAttrs;
      params.delete('target_session_attrs');
      const query = params.toString();
      withoutTarget = `${tail.slice(0, queryStart)}${query ? `?${query}` : ''}`;
    }
  }
  try {
    // what pg and postgres.js will make of each single-host URL
    for (const host of hosts) new URL(single(host) + withoutTarget);
    if (hosts.length === 0) new URL(url);
  } catch {
    throw new DatabaseUrlError('is not a valid URL');
  }
  return {
    hosts,
    target,
    forHost: (index) => (hosts.length === 0 ? url : single(hosts[index]!) + withoutTarget),
  };
}

function parseHost(text: string): DatabaseHost {
  // [::1]:5432, [::1], host:5432, host
  const match = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(text);
  if (!match) throw new DatabaseUrlError(`has a host that is empty or malformed: ${JSON.stringify(text)}`);
  const port = match[2] === undefined ? DEFAULT_PORT : Number(match[2]);
  if (port < 1 || port > 65535) throw new DatabaseUrlError(`has a port out of range: ${match[2]}`);
  return { host: decodeURIComponent(match[1]!.replace(/^\[|\]$/g, '')), port };
}

const formatHost = ({ host, port }: DatabaseHost) => `${host.includes(':') ? `[${host}]` : host}:${port}`;

/** A URL as it may be shown in a message or a log: its password (after the user, or `password=`) replaced by `***`. */
export function withoutPassword(url: string): string {
  const scheme = /^[^/]*\/\//.exec(url)?.[0] ?? '';
  const rest = url.slice(scheme.length);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const tail = authorityEnd === -1 ? '' : rest.slice(authorityEnd);
  const at = authority.lastIndexOf('@');
  let shown = authority;
  if (at !== -1) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    if (colon !== -1) shown = `${userinfo.slice(0, colon)}:***${authority.slice(at)}`;
  }
  return `${scheme}${shown}${tail.replace(/([?&]password=)[^&#]*/gi, '$1***')}`;
}

/** Error of a connection attempt when no host answered as asked: a connection error, answered 503. */
export class NoSuitableHostError extends Error {
  readonly code = 'CONNECTION_CLOSED';
}

export interface HostLocator {
  /** The index of the first host, in order, that answers as the URL's target asks. */
  locate(): Promise<number>;
  /** Forget the host found: the next locate() asks them all again. */
  forget(): void;
}

// A host found is kept this long, so that the connections a pool opens together ask once; a failover
// is noticed at the latest this much after the old primary's connections have failed.
const LOCATE_CACHE_MS = 1_000;
// Each host gets this long to accept a connection and answer: one that is black-holed must not hold
// the others back past the bound within which requests are answered.
const PROBE_TIMEOUT_SECONDS = 1;

/** Finds the host to connect to by asking each in turn (libpq's order), as the URL's target says. */
export function hostLocator(url: DatabaseUrl): HostLocator {
  let found: { index: number; at: number } | undefined;
  let inFlight: Promise<number> | undefined;
  const noneFound = (reasons: string[]) =>
    new NoSuitableHostError(`no database host answered ${url.target}: ${reasons.join('; ')}`);
  const probeInOrder = async () => {
    const reasons: string[] = [];
    for (let index = 0; index < url.hosts.length; index++) {
      const reason = await probe(url.forHost(index), url.target);
      if (reason === undefined) return index;
      reasons.push(`${formatHost(url.hosts[index]!)} ${reason}`);
    }
    throw noneFound(reasons);
  };
  // Only one host is read-write (fencing an old primary is the failover tool's job), so all are asked
  // at once and the first that qualifies is taken: a hung host ahead of the primary costs nothing,
  // where asking in order would cost its whole probe timeout at every new connection.
  const probeAtOnce = () =>
    new Promise<number>((resolve, reject) => {
      const reasons: string[] = [];
      let answered = 0;
      url.hosts.forEach((host, index) => {
        void probe(url.forHost(index), url.target).then((reason) => {
          answered++;
          if (reason === undefined) resolve(index);
          else reasons[index] = `${formatHost(host)} ${reason}`;
          if (answered === url.hosts.length) reject(noneFound(reasons.filter(Boolean)));
        });
      });
    });
  const probeAll = url.target === 'any' ? probeInOrder : probeAtOnce;
  return {
    locate() {
      if (found && Date.now() - found.at < LOCATE_CACHE_MS) return Promise.resolve(found.index);
      inFlight ??= probeAll()
        .then((index) => {
          found = { index, at: Date.now() };
          return index;
        })
        .finally(() => (inFlight = undefined));
      return inFlight;
    },
    forget() {
      found = undefined;
    },
  };
}

/** Why the host of `singleHostUrl` does not do for `target`, or undefined when it does. */
async function probe(singleHostUrl: string, target: TargetSessionAttrs): Promise<string | undefined> {
  const sql = postgres(singleHostUrl, {
    max: 1,
    connect_timeout: PROBE_TIMEOUT_SECONDS,
    idle_timeout: 1,
    onnotice: () => {},
    connection: { application_name: 'appointments-service-probe' },
  });
  try {
    const [state] = await Promise.race([
      sql<{ readOnly: string; recovery: boolean }[]>`
        SELECT current_setting('transaction_read_only') AS "readOnly", pg_is_in_recovery() AS recovery`,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error('did not answer in time')), PROBE_TIMEOUT_SECONDS * 1000).unref(),
      ),
    ]);
    if (target === 'read-write' && state!.readOnly === 'on') return 'is read-only';
    if (target === 'primary' && state!.recovery) return 'is a standby';
    if (target === 'standby' && !state!.recovery) return 'is not a standby';
    return undefined;
  } catch (error) {
    const { code, message } = error as { code?: string; message?: string };
    return `failed (${code ?? message ?? String(error)})`;
  } finally {
    void sql.end({ timeout: 1 });
  }
}

/**
 * postgres.js's `socket` hook for a pool: every new connection goes to the host `locator` finds, so a
 * connection opened after a failover reaches the new primary. A socket that does not connect makes
 * the locator ask all hosts again.
 */
export function locatedSocket(url: DatabaseUrl, locator: HostLocator): () => Promise<net.Socket> {
  return async () => {
    let index: number;
    try {
      index = await locator.locate();
    } catch (error) {
      return failedSocket(error as Error);
    }
    const { host, port } = url.hosts[index]!;
    return new Promise<net.Socket>((resolve) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => socket.destroy(new ConnectTimeoutError(`${host}:${port}`)), CONNECT_TIMEOUT_MS);
      const failed = (error: Error) => {
        clearTimeout(timer);
        locator.forget();
        resolve(failedSocket(error));
      };
      socket.once('error', failed);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', failed);
        resolve(socket);
      });
    });
  };
}

const CONNECT_TIMEOUT_MS = 5_000;

class ConnectTimeoutError extends Error {
  readonly code = 'CONNECT_TIMEOUT';
}

/**
 * A stand-in for a socket that could not be had, which fails with `error` as soon as postgres.js
 * listens to it. The hook must not throw: postgres.js 3.4.9 then rejects the query but leaves the
 * connection "connecting" for ever, and a pool whose connections all failed so would hang every query.
 * Through the socket's own error and close, the connection goes back to its closed ones and is tried
 * again later, as after a refused connection.
 */
function failedSocket(error: Error): net.Socket {
  const stream = new Duplex({
    read() {},
    write(_chunk, _encoding, _callback) {
      // never written: the stream is destroyed first
    },
  });
  // after postgres.js has added its listeners, which it does once the hook's promise has resolved
  setImmediate(() => stream.destroy(error));
  return stream as unknown as net.Socket;
}

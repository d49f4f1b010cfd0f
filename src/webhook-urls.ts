import { lookup, type LookupAddress } from 'node:dns';
import { lookup as lookupAll } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

// Where webhooks may be sent (issue 14): absolute https:// URLs without user info whose host resolves
// to public addresses only, unless WEBHOOK_ALLOW_PRIVATE_URLS=true (which also allows http:// and
// loopback, private and link-local addresses). The address is checked when the URL is given and
// again at every connection (allowedLookup), since a name can change what it points at.

export const MAX_URL_LENGTH = 2048;

/** A public unicast address: not loopback, private, link-local, CGNAT, multicast, reserved or the like. */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  return ipaddr.process(address).range() === 'unicast';
}

/** What is wrong with the URL's form, or null. */
export function urlSyntaxProblem(text: string, allowPrivate: boolean): string | null {
  if (text.length > MAX_URL_LENGTH) return `must be at most ${MAX_URL_LENGTH} characters`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.protocol !== 'https:' && !(allowPrivate && url.protocol === 'http:'))
    return allowPrivate ? 'must be an http:// or https:// URL' : 'must be an https:// URL';
  if (url.username !== '' || url.password !== '') return 'must not hold a user name or password';
  return null;
}

const hostOf = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, '$1');

/** What is wrong with the addresses the URL's host resolves to, or null (a URL of correct form). */
export async function urlAddressProblem(text: string, allowPrivate: boolean): Promise<string | null> {
  if (allowPrivate) return null;
  let addresses: LookupAddress[];
  try {
    addresses = await lookupAll(hostOf(new URL(text)), { all: true, verbatim: true });
  } catch {
    return 'must have a host name that resolves';
  }
  return addresses.every((a) => isPublicAddress(a.address)) ? null : 'must resolve to public addresses only';
}

/** The error of a connection refused because of its address (mapped to "address not allowed"). */
export const ADDRESS_NOT_ALLOWED = 'EADDRNOTALLOWED';

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A dns.lookup for the connections that deliver webhooks (undici's `connect.lookup`): it fails with
 * ADDRESS_NOT_ALLOWED when any address of the host is not public, unless private ones are allowed.
 */
export function allowedLookup(allowPrivate: boolean) {
  return (hostname: string, options: object, callback: LookupCallback) => {
    lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (!error && addresses.length === 0)
        error = Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' });
      if (error) return callback(error, []);
      if (!allowPrivate && !addresses.every((a) => isPublicAddress(a.address))) {
        const refused: NodeJS.ErrnoException = new Error(`${hostname} resolves to an address that is not allowed`);
        refused.code = ADDRESS_NOT_ALLOWED;
        return callback(refused, []);
      }
      if ((options as { all?: boolean }).all) return callback(null, addresses);
      const [first] = addresses;
      return callback(null, first!.address, first!.family);
    });
  };
}

/**
 * The one syntax of names a client chooses: appointment ids given as strings, organization ids, and the
 * x-request-id a client may send. Kept to characters that need no escaping in a URL, a log line or a header.
 */
export const ID_PATTERN = '^[A-Za-z0-9._:-]{1,128}$';
export const ID_SYNTAX = new RegExp(ID_PATTERN);
/** The same rule in words, for descriptions and error messages. */
export const ID_RULE = '1 to 128 characters from A-Z a-z 0-9 . _ : -';

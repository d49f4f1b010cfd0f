import { Ajv, type Options as AjvOptions } from 'ajv';
import { parseTime, SYSTEM_TIME_FORMAT, TIME_FORMAT } from './schemas/time.js';

/** The service's Ajv: its time formats, no silent removal of unknown properties; the app's and the batch items' validators. */
export function buildAjv(options: AjvOptions): Ajv {
  const ajv = new Ajv({ useDefaults: true, removeAdditional: false, allErrors: false, strict: false, ...options });
  ajv.addFormat(TIME_FORMAT, { type: 'string', validate: (value: string) => parseTime(value, 3) !== null });
  ajv.addFormat(SYSTEM_TIME_FORMAT, { type: 'string', validate: (value: string) => parseTime(value, 6) !== null });
  return ajv;
}

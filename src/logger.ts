import pino, { type Logger } from 'pino';

/** JSON logs; pretty ones when a person watches the terminal and pino-pretty is installed. */
export function createLogger(level: string): Logger {
  const pretty = process.stdout.isTTY && canResolve('pino-pretty');
  const options = { level, redact: ['req.headers.authorization'] };
  if (pretty) return pino({ ...options, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } });
  // Asynchronous writes: under load, the lines written while one write is under way go out together in
  // the next, instead of a system call per line. pino flushes what is left when the process exits.
  return pino(options, pino.destination({ dest: 1, sync: false }));
}

function canResolve(name: string): boolean {
  try {
    import.meta.resolve(name);
    return true;
  } catch {
    return false;
  }
}

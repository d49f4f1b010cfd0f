// The rule the service keeps within an org: no two appointments' half-open ranges [start, end) overlap.
// Times are compared as canonical ISO strings of one precision, whose order is the order of the instants.

export interface Range {
  start: string;
  end: string;
}

/** Two half-open ranges [a.start, a.end) and [b.start, b.end) overlap. */
export const overlaps = (a: Range, b: Range) => a.start < b.end && b.start < a.end;

/** The overlapping pairs of a list, each in start order (empty when the list is a valid calendar). */
export function overlappingPairs<T extends Range>(list: T[]): Array<[T, T]> {
  const sorted = [...list].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const pairs: Array<[T, T]> = [];
  // sorted by start, the ranges that overlap one are the next ones that start before it ends
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length && sorted[j]!.start < sorted[i]!.end; j++)
      pairs.push([sorted[i]!, sorted[j]!]);
  }
  return pairs;
}

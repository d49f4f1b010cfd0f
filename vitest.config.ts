import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Each file works in a database of its own, so files run in parallel.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // A zone far from UTC (+13:45/+12:45): times without an offset must still be read as UTC.
    env: { TZ: 'Pacific/Chatham' },
  },
});
